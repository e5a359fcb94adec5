import { eq, inArray } from 'drizzle-orm';
import type { z } from 'zod';
import type { bulkNodesSchema } from '$lib/schemas/nodes';
import { recordAudits, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes } from '$lib/server/db/schema';
import { nodesWithHistory } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { bulkDeletePhrase } from '$lib/confirm';

export type BulkNodes = z.infer<typeof bulkNodesSchema>;

export interface BulkResult {
	action: BulkNodes['action'];
	/** The nodes the change applied to, by name, in name order. */
	nodes: { id: string; name: string }[];
}

/**
 * One change to several nodes (docs/api.md, "POST /api/nodes/bulk"): add or remove a role, set the update policy, or delete them. It is
 * all or nothing: a node that does not exist refuses the whole request before anything changes, and the changes
 * and their audit rows (one per node) commit in one transaction.
 */
export async function bulkNodes(
	actor: Actor,
	input: BulkNodes,
	confirm?: { typed: string | undefined }
): Promise<BulkResult> {
	const ids = [...new Set(input.nodes)];
	// The pages' confirmation, as for one node (deleteNode): history leaves with the nodes, so it is typed.
	if (input.action === 'delete' && confirm && (await nodesWithHistory(ids)).size) {
		const phrase = bulkDeletePhrase(ids.length);
		if (confirm.typed?.trim().toLowerCase() !== phrase) {
			throw new ServiceError(
				'validation_failed',
				`Some of these nodes have run history: type "${phrase}" to delete them`,
				{
					confirm_name: `must be ${phrase}`
				}
			);
		}
	}
	return db().transaction(async (tx) => {
		// Locked, so a node deleted or edited meanwhile cannot slip between the check and the change.
		const found = await tx
			.select({ id: nodes.id, name: nodes.name, roles: nodes.roles })
			.from(nodes)
			.where(inArray(nodes.id, ids))
			.orderBy(nodes.name)
			.for('update');
		const missing = ids.filter((id) => !found.some((n) => n.id === id));
		if (missing.length) {
			throw new ServiceError('validation_failed', `nodes: ${missing.length} of them do not exist`, {
				nodes: `no node with the id ${missing.join(', ')}`
			});
		}
		const now = new Date();
		// A policy or a delete is one statement for all of them; roles differ per node.
		if (input.action === 'set_policy') {
			await tx.update(nodes).set({ policy: input.policy!, updatedAt: now }).where(inArray(nodes.id, ids));
		} else if (input.action === 'delete') {
			await tx.delete(nodes).where(inArray(nodes.id, ids));
		} else {
			for (const n of found) {
				const roles =
					input.action === 'add_role'
						? [...new Set([...n.roles, input.role!])]
						: n.roles.filter((r) => r !== input.role);
				if (roles.length > 32) {
					throw new ServiceError('validation_failed', `role: ${n.name} would have more than 32 roles`, {
						role: `${n.name} would have more than 32 roles`
					});
				}
				await tx.update(nodes).set({ roles, updatedAt: now }).where(eq(nodes.id, n.id));
			}
		}
		await recordAudits(
			actor,
			found.map((n) => ({
				action: input.action === 'delete' ? 'node.delete' : 'node.update',
				targetType: 'node',
				targetId: n.id,
				details:
					input.action === 'delete'
						? { bulk: true, name: n.name }
						: input.action === 'set_policy'
							? { bulk: true, policy: input.policy }
							: { bulk: true, [input.action]: input.role }
			})),
			tx
		);
		return { action: input.action, nodes: found.map((n) => ({ id: n.id, name: n.name })) };
	});
}
