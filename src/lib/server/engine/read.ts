import { and, desc, eq, gt, inArray, lte, sql, type SQL } from 'drizzle-orm';
import type { LogLine } from '$lib/log-line';
import { db } from '$lib/server/db';
import { events, runs, tasks, type TaskState } from '$lib/server/db/schema';
import { failedTaskStates } from './dispatch';
import { flowFor, registeredKinds } from './flows';

const changingKinds = () => registeredKinds().filter((k) => !flowFor(k)?.readOnly);

/**
 * What other domains may know of the engine's runs and tasks, as read models: the engine's tables are its
 * own (docs/development.md, "Folders and directions"), so no module outside engine/ queries them.
 */

export type { LogLine };

/**
 * The output each task of a run printed up to event `upTo` (a stream then sends what follows): the last
 * `maxLines` lines per task, from at most `maxEvents` output events, newest first. `truncated` lists the
 * tasks of which older lines were left out.
 */
export async function outputBacklog(
	runId: string,
	upTo: number,
	{ maxEvents = 5_000, maxLines = 500, taskId }: { maxEvents?: number; maxLines?: number; taskId?: string } = {}
): Promise<{ logs: Record<string, LogLine[]>; truncated: string[] }> {
	const rows = await db()
		.select({ taskId: events.taskId, data: events.data })
		.from(events)
		.where(
			and(
				eq(events.runId, runId),
				eq(events.type, 'task.output'),
				lte(events.id, upTo),
				taskId ? eq(events.taskId, taskId) : undefined
			)
		)
		.orderBy(desc(events.id))
		.limit(maxEvents);
	const logs: Record<string, LogLine[]> = {};
	const truncated = new Set<string>();
	if (rows.length === maxEvents) for (const r of rows) if (r.taskId) truncated.add(r.taskId);
	for (const r of rows.reverse()) {
		if (!r.taskId) continue;
		const step = typeof r.data.step === 'string' ? r.data.step : undefined;
		const lines = (r.data.lines as { s: string; t: string }[] | undefined) ?? [];
		(logs[r.taskId] ??= []).push(...lines.map((l) => ({ s: l.s, t: l.t, step })));
	}
	for (const [id, lines] of Object.entries(logs)) {
		if (lines.length > maxLines) {
			logs[id] = lines.slice(-maxLines);
			truncated.add(id);
		}
	}
	return { logs, truncated: [...truncated] };
}

/** One task's last `maxLines` lines up to event `upTo`. */
export async function taskOutput(
	runId: string,
	taskId: string,
	upTo: number,
	maxLines = 500
): Promise<{ lines: LogLine[]; truncated: boolean }> {
	// Output events carry up to a batch of lines each: this many events hold the last maxLines lines.
	const { logs, truncated } = await outputBacklog(runId, upTo, { taskId, maxEvents: maxLines, maxLines });
	return { lines: logs[taskId] ?? [], truncated: truncated.includes(taskId) };
}

export interface NodeTask {
	id: string;
	runId: string;
	runNumber: number;
	runTitle: string;
	runKind: string;
	runState: string;
	state: TaskState;
	needsAttention: boolean;
	currentStep: string | null;
	attempt: number;
	error: string | null;
	startedAt: Date | null;
	endedAt: Date | null;
}

/** The node's tasks in its most recent runs, newest run first. */
/** Which of these nodes some run ever had a task on (their history, which a removal loses from its pages). */
export async function nodesWithHistory(nodeIds: string[]): Promise<Set<string>> {
	if (!nodeIds.length) return new Set();
	const rows = await db().selectDistinct({ nodeId: tasks.nodeId }).from(tasks).where(inArray(tasks.nodeId, nodeIds));
	return new Set(rows.map((r) => r.nodeId).filter((id): id is string => id !== null));
}

export async function recentTasksOf(nodeId: string, limit = 20): Promise<NodeTask[]> {
	return db()
		.select({
			id: tasks.id,
			runId: runs.id,
			runNumber: runs.number,
			runTitle: runs.title,
			runKind: runs.kind,
			runState: runs.state,
			state: tasks.state,
			needsAttention: tasks.needsAttention,
			currentStep: tasks.currentStep,
			attempt: tasks.attempt,
			error: tasks.error,
			startedAt: tasks.startedAt,
			endedAt: tasks.endedAt
		})
		.from(tasks)
		.innerJoin(runs, eq(runs.id, tasks.runId))
		.where(eq(tasks.nodeId, nodeId))
		.orderBy(desc(runs.number))
		.limit(limit);
}

/** Run numbers (what operators call a run) by run id, for the ids that exist. */
export async function runNumbers(ids: string[]): Promise<Map<string, number>> {
	if (!ids.length) return new Map();
	const rows = await db().select({ id: runs.id, number: runs.number }).from(runs).where(inArray(runs.id, ids));
	return new Map(rows.map((r) => [r.id, r.number]));
}

/**
 * Tasks that failed (or were rolled back) since `since`, of runs of `kind` created by `createdBy` whose scope
 * names `role` among its roles: how a feature that starts runs on its own judges how they went.
 */
export async function countFailedTasks(q: { kind: string; createdBy: string; scopeRole: string; since: Date }) {
	const [row] = await db()
		.select({ n: sql<number>`count(*)::int` })
		.from(tasks)
		.innerJoin(runs, eq(runs.id, tasks.runId))
		.where(
			and(
				eq(runs.kind, q.kind),
				eq(runs.createdBy, q.createdBy),
				sql`${runs.scope} -> 'roles' ? ${q.scopeRole}`,
				inArray(tasks.state, failedTaskStates),
				gt(tasks.endedAt, q.since)
			)
		);
	return Number(row?.n ?? 0);
}

/**
 * The ids of nodes with a task of a run that changes nodes (its flow is not `readOnly`) in `state`, as a
 * subquery `(node_id)` for set-based status queries over the whole fleet.
 */
export function nodesWithActiveTasks(state: 'running' | 'queued'): SQL {
	const kinds = changingKinds();
	return sql`(select distinct t.node_id from ${tasks} t join ${runs} r on r.id = t.run_id
		where t.state = ${state} and r.state in ('queued', 'running', 'paused')
			and r.kind in (${
				kinds.length
					? sql.join(
							kinds.map((k) => sql`${k}`),
							sql`, `
						)
					: sql`null`
			}))`;
}

/** Whether some task is running on the node now. */
export async function nodeIsBusy(nodeId: string): Promise<boolean> {
	const rows = await db()
		.select({ id: tasks.id })
		.from(tasks)
		.where(and(eq(tasks.nodeId, nodeId), eq(tasks.state, 'running')))
		.limit(1);
	return rows.length > 0;
}

/** The ids of the nodes some task is running on now. */
export async function busyNodes(): Promise<Set<string>> {
	const rows = await db().selectDistinct({ id: tasks.nodeId }).from(tasks).where(eq(tasks.state, 'running'));
	return new Set(rows.map((r) => r.id));
}

/**
 * A condition for another domain's statement: no task has been on the node since `since` (none running now,
 * none ended after it). Written into the same statement as a write about the node, it makes "record this only
 * if nothing touched the node meanwhile" one atomic step instead of a check and an act.
 */
export function nodeUntouchedSince(nodeId: SQL | string, since: Date): SQL {
	return sql`not exists (select 1 from ${tasks} t where t.node_id = ${nodeId}
		and (t.state = 'running' or t.ended_at >= ${since.toISOString()}::timestamptz))`;
}

/** One line of a run's whole log, for the download: which node and step printed it. */
export interface RunLogLine {
	node: string;
	step: string | null;
	stream: string;
	text: string;
}

/**
 * Every output line of a run, oldest first, read a page of events at a time so that a run with millions of
 * lines is streamed to its reader without being held in memory.
 */
export async function* readRunLog(runId: string, pageSize = 1_000): AsyncGenerator<RunLogLine> {
	for (let after = 0; ;) {
		const rows = await db()
			.select({ id: events.id, data: events.data, node: tasks.nodeName })
			.from(events)
			.innerJoin(tasks, eq(tasks.id, events.taskId))
			.where(and(eq(events.runId, runId), eq(events.type, 'task.output'), gt(events.id, after)))
			.orderBy(events.id)
			.limit(pageSize);
		for (const r of rows) {
			const step = typeof r.data.step === 'string' ? r.data.step : null;
			for (const l of (r.data.lines as { s: string; t: string }[] | undefined) ?? []) {
				yield { node: r.node, step, stream: l.s, text: l.t };
			}
		}
		if (rows.length < pageSize) return;
		after = rows.at(-1)!.id;
	}
}
