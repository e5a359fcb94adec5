import { createHash } from 'node:crypto';
import { and, eq, isNotNull } from 'drizzle-orm';
import type { Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certificates, certRoles, nodes } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { startRotation } from './plan';

/**
 * Auto-renew (docs/certificates.md, "Auto-renew"): a certificate is renewed once two thirds of its lifetime
 * have passed, at a moment spread over the next sixth by the node's id, so that a fleet whose certificates
 * were issued together does not renew them all at once.
 */

export const autoRenewActor: Actor = { id: null, name: 'cert-auto-renew', via: 'system', ip: null };

/** Where in [0, 1) a node falls, from its id: stable across turns and consoles. */
function spreadOf(nodeId: string): number {
	return createHash('sha256').update(nodeId).digest().readUInt32BE(0) / 2 ** 32;
}

/** The moment a certificate valid from `notBefore` to `notAfter` is due for renewal on `nodeId`. */
export function renewalDue(nodeId: string, notBefore: Date, notAfter: Date): Date {
	const lifetime = notAfter.getTime() - notBefore.getTime();
	return new Date(notBefore.getTime() + lifetime * (2 / 3 + spreadOf(nodeId) / 6));
}

/** One turn: rotates the nodes whose role certificate on disk is due, in one run. */
export async function runAutoRenew(now = new Date()): Promise<{ run_id: string | null; nodes: string[] }> {
	const rows = await db()
		.select({ nodeId: certificates.nodeId, notBefore: certificates.notBefore, notAfter: certificates.notAfter })
		.from(certificates)
		.innerJoin(nodes, eq(nodes.id, certificates.nodeId))
		.innerJoin(certRoles, eq(certRoles.role, certificates.role))
		.where(and(eq(certificates.source, 'file'), isNotNull(certificates.notAfter), eq(nodes.hostKeyStatus, 'pinned')));
	const due = [
		...new Set(
			rows.filter((r) => r.notBefore && renewalDue(r.nodeId, r.notBefore, r.notAfter!) <= now).map((r) => r.nodeId)
		)
	];
	if (!due.length) return { run_id: null, nodes: [] };
	try {
		const { runId } = await startRotation(autoRenewActor, { nodes: due, dry_run: false });
		return { run_id: runId, nodes: due };
	} catch (err) {
		// A rotation still covers some of them, or there is no CA to sign with: the next turn looks again.
		if (err instanceof ServiceError) return { run_id: null, nodes: [] };
		throw err;
	}
}
