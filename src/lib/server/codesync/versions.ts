import { and, asc, eq, like } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodeCodeVersions, nodes } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { assertRolesExist } from './roles';

/** What each node runs per role (`node_code_versions`), written by Code Sync and by mark-synced. */

/** The node now runs `commit` for `role`: any earlier failure of that role on it is over. */
export async function recordSynced(
	nodeId: string,
	role: string,
	commit: string,
	previous: string | null
): Promise<void> {
	const now = new Date();
	await db()
		.insert(nodeCodeVersions)
		.values({ nodeId, role, commit, previousCommit: previous, syncedAt: now })
		.onConflictDoUpdate({
			target: [nodeCodeVersions.nodeId, nodeCodeVersions.role],
			set: {
				commit,
				previousCommit: previous,
				syncedAt: now,
				lastError: null,
				failedCommit: null,
				failedAt: null,
				failedRunId: null
			}
		});
	await recordEvent({ type: 'node.code', nodeId, data: { role, commit } });
}

/** An update of `role` to `commit` failed on the node; its recorded commit stays what it really runs. */
export async function recordFailed(
	nodeId: string,
	role: string,
	commit: string,
	error: string,
	runId: string | null
): Promise<void> {
	const now = new Date();
	const failure = { lastError: error.slice(0, 2000), failedCommit: commit, failedAt: now, failedRunId: runId };
	await db()
		.insert(nodeCodeVersions)
		.values({ nodeId, role, ...failure })
		.onConflictDoUpdate({ target: [nodeCodeVersions.nodeId, nodeCodeVersions.role], set: failure });
	await recordEvent({ type: 'node.code', nodeId, runId, data: { role, failed_commit: commit, error } });
}

/** Forgets a failure (the operator has dealt with it, or the node has since been synced). */
export async function clearFailure(nodeId: string, role: string): Promise<void> {
	await db()
		.update(nodeCodeVersions)
		.set({ lastError: null, failedCommit: null, failedAt: null, failedRunId: null })
		.where(and(eq(nodeCodeVersions.nodeId, nodeId), eq(nodeCodeVersions.role, role)));
}

/**
 * `POST /api/nodes/{id}/mark-synced` (docs/code-sync.md): a node that deploys itself reports the commit it now runs.
 * The role must be defined and be one of the node's roles.
 */
export async function markSynced(actor: Actor, nodeId: string, input: { role: string; commit: string }): Promise<void> {
	const node = await getNode(nodeId);
	await assertRolesExist([input.role], 'role');
	if (!node.roles.includes(input.role)) {
		throw new ServiceError('validation_failed', `Node ${node.name} does not have the role ${input.role}`, {
			role: `is not one of the node's roles (${node.roles.join(', ') || 'none'})`
		});
	}
	const [current] = await db()
		.select({ commit: nodeCodeVersions.commit })
		.from(nodeCodeVersions)
		.where(and(eq(nodeCodeVersions.nodeId, nodeId), eq(nodeCodeVersions.role, input.role)));
	const previous = current?.commit && current.commit !== input.commit ? current.commit : null;
	await recordSynced(nodeId, input.role, input.commit, previous);
	await recordAudit(actor, {
		action: 'node.mark_synced',
		targetType: 'node',
		targetId: nodeId,
		details: { node: node.name, role: input.role, commit: input.commit, previous }
	});
}

/** Which nodes run a commit (a full id, or a prefix of at least 7 characters), per role. */
export async function nodesRunningCommit(
	commit: string
): Promise<{ nodeId: string; nodeName: string; role: string; commit: string; syncedAt: Date | null }[]> {
	return db()
		.select({
			nodeId: nodeCodeVersions.nodeId,
			nodeName: nodes.name,
			role: nodeCodeVersions.role,
			commit: nodeCodeVersions.commit,
			syncedAt: nodeCodeVersions.syncedAt
		})
		.from(nodeCodeVersions)
		.innerJoin(nodes, eq(nodes.id, nodeCodeVersions.nodeId))
		.where(like(nodeCodeVersions.commit, `${commit.toLowerCase().replace(/[^0-9a-f]/g, '')}%`))
		.orderBy(asc(nodes.name)) as Promise<
		{ nodeId: string; nodeName: string; role: string; commit: string; syncedAt: Date | null }[]
	>;
}
