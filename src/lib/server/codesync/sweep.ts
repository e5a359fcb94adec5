import { and, eq, inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeRoles, nodeCodeVersions, type CodeRole, type Node } from '$lib/server/db/schema';
import { nodeUntouchedSince, recordEvent } from '$lib/server/engine';
import type { SweepInspector } from '$lib/server/fleet/sweep';
import { log } from '$lib/server/log';
import type { SshConnection } from '$lib/server/ssh/connection';
import { probeHealth, type Exec } from './health';
import { methodFor } from './methods';

/** Code Sync's part of the health sweep (fleet/sweep.ts): each role's real commit and health on every node. */
export const codeSyncInspector: SweepInspector = {
	counts: ['unhealthy_roles', 'drifted_roles'],
	async begin() {
		const roles = new Map((await db().select().from(codeRoles)).map((r) => [r.name, r]));
		return async (conn, node, since) => {
			const found = await inspectRoles(conn, node, roles, since);
			return { unhealthy_roles: found.unhealthy, drifted_roles: found.drifted };
		};
	}
};

/** Reads each role's real commit and health on a connected node, and records both. */
async function inspectRoles(
	conn: SshConnection,
	node: Node,
	roles: Map<string, CodeRole>,
	since: Date
): Promise<{ unhealthy: number; drifted: number }> {
	const exec: Exec = (command, options) => conn.exec(command, { deadlineMs: options?.deadlineMs ?? 15_000 });
	const defined = node.roles.map((r) => roles.get(r)).filter((r): r is CodeRole => !!r);
	if (!defined.length) return { unhealthy: 0, drifted: 0 };
	const recorded = new Map(
		(
			await db()
				.select()
				.from(nodeCodeVersions)
				.where(
					and(
						eq(nodeCodeVersions.nodeId, node.id),
						inArray(
							nodeCodeVersions.role,
							defined.map((r) => r.name)
						)
					)
				)
		).map((v) => [v.role, v])
	);
	let unhealthy = 0;
	let drifted = 0;
	for (const role of defined) {
		let head: string | null;
		try {
			head = await methodFor(role).current(exec, role);
		} catch (err) {
			head = null;
			log.info({ node: node.name, role: role.name, err: (err as Error).message }, 'health sweep: no commit');
		}
		const problem = await probeHealth(exec, role);
		if (problem) unhealthy++;
		const before = recorded.get(role.name);
		const moved = head !== null && head !== before?.commit;
		if (moved) drifted++;
		const now = new Date();
		// What the node really runs is recorded; a failure is cleared only when the node now runs the latest.
		const atLatest = head !== null && !!role.latestCommit && head.startsWith(role.latestCommit);
		const health = { healthy: !problem, healthError: problem, healthCheckedAt: now };
		const observed = moved
			? {
					commit: head,
					previousCommit: before?.commit ?? null,
					syncedAt: now,
					...(atLatest ? { lastError: null, failedCommit: null, failedAt: null, failedRunId: null } : {})
				}
			: {};
		const written = await db()
			.insert(nodeCodeVersions)
			.values({ nodeId: node.id, role: role.name, ...health, ...observed })
			.onConflictDoUpdate({
				target: [nodeCodeVersions.nodeId, nodeCodeVersions.role],
				set: { ...health, ...observed },
				setWhere: nodeUntouchedSince(node.id, since)
			})
			.returning({ nodeId: nodeCodeVersions.nodeId });
		// A task got to the node first: it records what it did; this look is out of date.
		if (!written.length) return { unhealthy, drifted };
		if (moved || (before?.healthy ?? true) !== !problem) {
			await recordEvent({
				type: 'node.code',
				nodeId: node.id,
				data: { role: role.name, commit: head, healthy: !problem, health_error: problem, observed: true }
			});
		}
	}
	return { unhealthy, drifted };
}
