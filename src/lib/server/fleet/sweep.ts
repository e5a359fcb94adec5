import { eq } from 'drizzle-orm';
import { databaseNow, db } from '$lib/server/db';
import { nodes, type Node } from '$lib/server/db/schema';
import { busyNodes, nodeIsBusy, recordEvent } from '$lib/server/engine';
import { log, loggableError } from '$lib/server/log';
import type { SshConnection } from '$lib/server/ssh/connection';
import { checkNode } from './checks';

/**
 * The health sweep: every node in turn, a limited number at once — is it reachable (last seen, UNREACHABLE),
 * and whatever each domain looks at while connected (Code Sync: which commit each role really runs, so a
 * hand-made deploy shows up, and whether it is healthy). Nodes with a task in progress are left alone, so the
 * sweep never sees a service mid-restart (docs/code-sync.md, "Health sweep").
 */

/** Looks at a node the sweep reached; the counts it returns add up into the sweep's result. */
export type NodeInspection = (conn: SshConnection, node: Node, since: Date) => Promise<Record<string, number>>;

export interface SweepInspector {
	/** The counts it reports, zero when it saw nothing. */
	counts: string[];
	/** Called once per sweep (to read what every node's inspection shares); returns the inspection. */
	begin(): Promise<NodeInspection>;
}

const inspectors = new Map<string, SweepInspector>();

/** A domain's part of the sweep, by name (registered again, it replaces the earlier one). */
export function registerSweepInspector(name: string, inspector: SweepInspector): void {
	inspectors.set(name, inspector);
}

export type SweepResult = {
	checked: number;
	reachable: number;
	unreachable: number;
	skipped_busy: number;
	duration_ms: number;
} & Record<string, number>;

export async function runHealthSweep(concurrency: number): Promise<SweepResult> {
	const started = performance.now();
	// Only nodes the console may connect to: an unknown or changed key waits for an admin.
	const pinned = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.hostKeyStatus, 'pinned'));
	const busy = await busyNodes();
	const candidates = pinned.filter((n) => !busy.has(n.id));
	const result: SweepResult = { checked: 0, reachable: 0, unreachable: 0, skipped_busy: 0, duration_ms: 0 };
	for (const i of inspectors.values()) for (const name of i.counts) result[name] = 0;
	const inspections = await Promise.all([...inspectors.values()].map((i) => i.begin()));
	const queue = candidates.map((c) => c.id);
	const worker = async () => {
		for (let id = queue.shift(); id; id = queue.shift()) {
			try {
				// What an inspection finds is recorded only if no task touched the node from here on (tested in
				// the statement that records it: a task may start at any moment while the sweep looks). The
				// database's clock, which stamps the tasks' ends, not this console's.
				const since = await databaseNow();
				const { result: r } = await checkNode(id, {
					whileConnected: async (conn, node) => {
						if (await nodeIsBusy(id)) return;
						for (const inspect of inspections) {
							for (const [name, n] of Object.entries(await inspect(conn, node, since)))
								result[name] = (result[name] ?? 0) + n;
						}
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
