import { and, eq, inArray, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeRoles, nodeCodeVersions, nodes, tasks, type CodeRole, type Node } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine/events';
import { nodeUntouchedSince } from '$lib/server/engine/runs';
import { checkNode } from '$lib/server/fleet/nodes';
import { log, loggableError } from '$lib/server/log';
import type { SshConnection } from '$lib/server/ssh/connection';
import { probeHealth, type Exec } from './health';
import { methodFor } from './methods';

/**
 * The health sweep (docs/code-sync.md): every node in turn, a limited number at once — is it reachable (last seen,
 * UNREACHABLE), which commit each of its roles really runs (a hand-made deploy shows up), and is each role
 * healthy. Nodes with a task in progress are left alone, so the sweep never sees a service mid-restart.
 */

export interface SweepResult {
	checked: number;
	reachable: number;
	unreachable: number;
	skipped_busy: number;
	unhealthy_roles: number;
	drifted_roles: number;
	duration_ms: number;
}

export async function runHealthSweep(concurrency: number): Promise<SweepResult> {
	const started = performance.now();
	// Only nodes the console may connect to: an unknown or changed key waits for an admin.
	const pinned = await db()
		.select({
			id: nodes.id,
			busy: sql<boolean>`exists (select 1 from tasks t where t.node_id = ${nodes.id} and t.state = 'running')`
		})
		.from(nodes)
		.where(eq(nodes.hostKeyStatus, 'pinned'));
	const candidates = pinned.filter((n) => !n.busy);
	const roles = new Map((await db().select().from(codeRoles)).map((r) => [r.name, r]));
	const result: SweepResult = {
		checked: 0,
		reachable: 0,
		unreachable: 0,
		skipped_busy: 0,
		unhealthy_roles: 0,
		drifted_roles: 0,
		duration_ms: 0
	};
	const queue = candidates.map((c) => c.id);
	const worker = async () => {
		for (let id = queue.shift(); id; id = queue.shift()) {
			try {
				// What the sweep finds is recorded only if no task touched the node from here on (tested in the
				// statement that records it: a task may start at any moment while the sweep looks).
				const since = new Date();
				const { result: r } = await checkNode(id, {
					whileConnected: async (conn, node) => {
						if (await busy(id)) return;
						const found = await inspectRoles(conn, node, roles, since);
						result.unhealthy_roles += found.unhealthy;
						result.drifted_roles += found.drifted;
					}
				});
				result.checked++;
				if (r.reachable) result.reachable++;
				else result.unreachable++;
			} catch (err) {
				log.warn({ err: loggableError(err), nodeId: id }, 'health sweep: check failed');
			}
		}
	};
	await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, queue.length)) }, worker));
	result.skipped_busy = pinned.length - candidates.length;
	result.duration_ms = Math.round(performance.now() - started);
	await recordEvent({ type: 'sweep.ended', data: { ...result } });
	return result;
}

async function busy(nodeId: string): Promise<boolean> {
	const rows = await db()
		.select({ id: tasks.id })
		.from(tasks)
		.where(and(eq(tasks.nodeId, nodeId), eq(tasks.state, 'running')))
		.limit(1);
	return rows.length > 0;
}

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
