import { eq } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes, type Node } from '$lib/server/db/schema';
import { getNode } from './nodes';

/** Pins the fingerprint an admin accepted (the one the node presented, or one known out of band). */
export async function acceptHostKey(actor: Actor, id: string, fingerprint: string): Promise<Node> {
	await getNode(id);
	const [row] = await db()
		.update(nodes)
		.set({
			hostKeyFingerprint: fingerprint,
			hostKeyStatus: 'pinned',
			presentedFingerprint: null,
			lastError: null,
			updatedAt: new Date()
		})
		.where(eq(nodes.id, id))
		.returning();
	await recordAudit(actor, {
		action: 'node.host_key_accept',
		targetType: 'node',
		targetId: id,
		details: { name: row!.name, fingerprint }
	});
	return row!;
}
