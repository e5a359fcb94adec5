import { and, asc, desc, eq, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import { randomUUID } from 'node:crypto';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db, type Transaction } from '$lib/server/db';
import {
	nodes,
	runs,
	taskSteps,
	tasks,
	type Run,
	type RunOptions,
	type RunState,
	type Task,
	type TaskStep
} from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { dispatchRun, failedTaskStates, terminalRunStates } from './dispatch';
import { recordEvent } from './events';
import { flowFor } from './flows';
import { tasksEndedUnrun } from './metrics';

export const DEFAULT_RUN_CONCURRENCY = 5;

export interface NewRun {
	kind: string;
	title: string;
	nodeIds: string[];
	params?: Record<string, unknown>;
	scope?: Record<string, unknown>;
	options?: Partial<RunOptions>;
	/** Per node, the phase its task runs in (default 0); lower phases finish first. */
	phaseOf?: (nodeId: string) => number;
	parentRunId?: string;
	/**
	 * Refuse (409) when a live run of the same kind still has a queued or running task on one of these
	 * nodes. Checked and created under one advisory lock per kind, so two simultaneous calls cannot both pass.
	 */
	exclusive?: boolean;
}

/** Plans a run's tasks (one per node) and starts dispatching. Returns at once: progress arrives as events. */
export async function createRun(actor: Actor, input: NewRun): Promise<Run> {
	return (await insertRun(actor, input))!;
}

/**
 * createRun for a run that must exist once: `claim` is called first, in the transaction that creates the run,
 * with the id the run will have, and writes the caller's claim on it (a rollout's stage takes the run's id with a
 * conditional UPDATE). False creates nothing and returns null. Claim and run are committed together or not at
 * all, and a second claimant waits on the first one's row lock until it commits, then sees it claimed.
 */
export function createClaimedRun(
	actor: Actor,
	input: NewRun,
	claim: (tx: Transaction, runId: string) => Promise<boolean>
): Promise<Run | null> {
	return insertRun(actor, input, claim);
}

async function insertRun(
	actor: Actor,
	input: NewRun,
	claim?: (tx: Transaction, runId: string) => Promise<boolean>
): Promise<Run | null> {
	const flow = flowFor(input.kind);
	if (!flow) throw new ServiceError('validation_failed', `Unknown run kind ${input.kind}`, { kind: 'unknown kind' });
	const params = flow.parseParams
		? (flow.parseParams(input.params ?? {}) as Record<string, unknown>)
		: (input.params ?? {});
	const nodeIds = [...new Set(input.nodeIds)];
	if (!nodeIds.length) throw new ServiceError('validation_failed', 'A run needs at least one node', { nodes: 'empty' });
	const found = await db().select({ id: nodes.id, name: nodes.name }).from(nodes).where(inArray(nodes.id, nodeIds));
	if (found.length !== nodeIds.length) {
		const known = new Set(found.map((n) => n.id));
		const missing = nodeIds.filter((id) => !known.has(id));
		throw new ServiceError('validation_failed', `Unknown node(s): ${missing.join(', ')}`, { nodes: 'unknown node' });
	}
	const nameOf = new Map(found.map((n) => [n.id, n.name]));
	const options: RunOptions = { concurrency: DEFAULT_RUN_CONCURRENCY, ...input.options };
	const run = await db().transaction(async (tx) => {
		const id = randomUUID();
		if (claim && !(await claim(tx, id))) return null;
		if (input.exclusive) {
			await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${`flotilla:runs:${input.kind}`}))`);
			const [busy] = await tx
				.selectDistinct({ number: runs.number, title: runs.title })
				.from(runs)
				.innerJoin(tasks, eq(tasks.runId, runs.id))
				.where(
					and(
						eq(runs.kind, input.kind),
						// A cancelled run still rolling back is still on its nodes.
						or(
							inArray(runs.state, ['queued', 'running', 'paused']),
							and(eq(runs.state, 'cancelled'), isNull(runs.endedAt))
						),
						inArray(tasks.state, ['queued', 'running']),
						inArray(tasks.nodeId, nodeIds)
					)
				)
				.orderBy(asc(runs.number))
				.limit(1);
			if (busy) {
				throw conflict(`Run #${busy.number} (${busy.title}) is still updating some of these nodes`, {
					scope: `overlaps run #${busy.number}, still in progress`
				});
			}
		}
		const [run] = await tx
			.insert(runs)
			.values({
				id,
				kind: input.kind,
				title: input.title,
				createdBy: actor.name,
				scope: input.scope ?? {},
				params,
				options,
				parentRunId: input.parentRunId ?? null
			})
			.returning();
		const rows = nodeIds.map((nodeId, seq) => ({
			runId: run!.id,
			nodeId,
			nodeName: nameOf.get(nodeId)!,
			phase: input.phaseOf?.(nodeId) ?? 0,
			seq
		}));
		// Chunked: one insert with tens of thousands of rows would pass PostgreSQL's parameter limit.
		for (let i = 0; i < rows.length; i += 1_000) await tx.insert(tasks).values(rows.slice(i, i + 1_000));
		return run!;
	});
	if (!run) return null;
	await recordAudit(actor, {
		action: 'run.create',
		targetType: 'run',
		targetId: run.id,
		details: { kind: run.kind, title: run.title, nodes: nodeIds.length, options }
	});
	await recordEvent({
		type: 'run.created',
		runId: run.id,
		data: { number: run.number, kind: run.kind, title: run.title, total: nodeIds.length, created_by: actor.name }
	});
	await dispatchRun(run.id);
	return run;
}

export interface RunCounts {
	total: number;
	queued: number;
	running: number;
	succeeded: number;
	failed: number;
	rolled_back: number;
	cancelled: number;
	skipped: number;
	needs_attention: number;
}

export type RunSummary = Run & { counts: RunCounts };

async function countsFor(runIds: string[]): Promise<Map<string, RunCounts>> {
	const out = new Map<string, RunCounts>();
	if (!runIds.length) return out;
	const rows = await db()
		.select({
			runId: tasks.runId,
			state: tasks.state,
			n: sql<number>`count(*)::int`,
			attention: sql<number>`count(*) filter (where ${tasks.needsAttention})::int`
		})
		.from(tasks)
		.where(inArray(tasks.runId, runIds))
		.groupBy(tasks.runId, tasks.state);
	for (const id of runIds) {
		out.set(id, {
			total: 0,
			queued: 0,
			running: 0,
			succeeded: 0,
			failed: 0,
			rolled_back: 0,
			cancelled: 0,
			skipped: 0,
			needs_attention: 0
		});
	}
	for (const r of rows) {
		const c = out.get(r.runId)!;
		c[r.state] += r.n;
		c.total += r.n;
		c.needs_attention += r.attention;
	}
	return out;
}

export async function listRuns(q: {
	limit: number;
	cursor?: number;
	state?: RunState;
	kind?: string;
}): Promise<{ items: RunSummary[]; nextCursor: number | null }> {
	const rows = await db()
		.select()
		.from(runs)
		.where(
			and(
				q.cursor ? lt(runs.number, q.cursor) : undefined,
				q.state ? eq(runs.state, q.state) : undefined,
				q.kind ? eq(runs.kind, q.kind) : undefined
			)
		)
		.orderBy(desc(runs.number))
		.limit(q.limit + 1);
	const page = rows.slice(0, q.limit);
	const counts = await countsFor(page.map((r) => r.id));
	return {
		items: page.map((r) => ({ ...r, counts: counts.get(r.id)! })),
		nextCursor: rows.length > q.limit ? page.at(-1)!.number : null
	};
}

export type TaskWithSteps = Task & { steps: TaskStep[] };

export async function getRun(id: string): Promise<RunSummary & { tasks: TaskWithSteps[] }> {
	const [run] = await db().select().from(runs).where(eq(runs.id, id));
	if (!run) throw notFound('Run');
	const taskRows = await db().select().from(tasks).where(eq(tasks.runId, id)).orderBy(asc(tasks.phase), asc(tasks.seq));
	const stepRows = await db()
		.select({ step: taskSteps })
		.from(taskSteps)
		.innerJoin(tasks, eq(tasks.id, taskSteps.taskId))
		.where(eq(tasks.runId, id))
		.orderBy(asc(taskSteps.id));
	const stepsOf = Map.groupBy(
		stepRows.map((r) => r.step),
		(s) => s.taskId
	);
	const counts = await countsFor([id]);
	return {
		...run,
		counts: counts.get(id)!,
		tasks: taskRows.map((t) => ({ ...t, steps: stepsOf.get(t.id) ?? [] }))
	};
}

async function getRunRow(id: string): Promise<Run> {
	const [run] = await db().select().from(runs).where(eq(runs.id, id));
	if (!run) throw notFound('Run');
	return run;
}

/**
 * Cancels a run: queued tasks stop at once; running ones (on whichever instance) have their remote command
 * killed and roll back, through the `run.state` event every instance's runner watches.
 */
export async function cancelRun(actor: Actor, id: string): Promise<Run> {
	const reason = `Cancelled by ${actor.name}`;
	const result = await db().transaction(async (tx) => {
		const [run] = await tx.select().from(runs).where(eq(runs.id, id)).for('no key update');
		if (!run) throw notFound('Run');
		if (terminalRunStates.includes(run.state)) throw conflict(`Run #${run.number} already ended (${run.state})`);
		const [updated] = await tx.update(runs).set({ state: 'cancelled', reason }).where(eq(runs.id, id)).returning();
		const stopped = await tx
			.update(tasks)
			.set({ state: 'cancelled', error: reason, endedAt: new Date() })
			.where(and(eq(tasks.runId, id), eq(tasks.state, 'queued')))
			.returning({ id: tasks.id, nodeId: tasks.nodeId, nodeName: tasks.nodeName });
		return { run: updated!, stopped };
	});
	tasksEndedUnrun(result.run.kind, 'cancelled', result.stopped.length);
	for (const t of result.stopped) {
		void recordEvent({
			type: 'task.state',
			runId: id,
			taskId: t.id,
			nodeId: t.nodeId,
			data: { state: 'cancelled', node: t.nodeName, error: reason }
		});
	}
	await recordEvent({ type: 'run.state', runId: id, data: { state: 'cancelled', reason } });
	await recordAudit(actor, { action: 'run.cancel', targetType: 'run', targetId: id });
	await dispatchRun(id);
	return result.run;
}

/** Stops dispatching new tasks; running ones finish. */
export async function pauseRun(actor: Actor, id: string): Promise<Run> {
	const reason = `Paused by ${actor.name}`;
	const [run] = await db()
		.update(runs)
		.set({ state: 'paused', reason })
		.where(and(eq(runs.id, id), inArray(runs.state, ['queued', 'running'])))
		.returning();
	if (!run) {
		const existing = await getRunRow(id);
		throw conflict(`Run #${existing.number} is ${existing.state}: only a queued or running run can be paused`);
	}
	await recordEvent({ type: 'run.state', runId: id, data: { state: 'paused', reason } });
	await recordAudit(actor, { action: 'run.pause', targetType: 'run', targetId: id });
	return run;
}

/**
 * Resumes dispatching, also after the run paused itself on its failure threshold. The state and the relaxed
 * limits are written together under the run's row lock, which dispatch takes too: a dispatch in between
 * would otherwise see the run running with its old limits and pause it again.
 */
export async function resumeRun(actor: Actor, id: string): Promise<Run> {
	const run = await db().transaction(async (tx) => {
		const [run] = await tx.select().from(runs).where(eq(runs.id, id)).for('no key update');
		if (!run) throw notFound('Run');
		if (run.state !== 'paused') throw conflict(`Run #${run.number} is ${run.state}: only a paused run can be resumed`);
		// A run that paused on its threshold would pause again at once: resuming accepts the failures so far.
		const [counted] = await tx
			.select({
				failed: sql<number>`count(*) filter (where ${inArray(tasks.state, failedTaskStates)})::int`,
				total: sql<number>`count(*)::int`
			})
			.from(tasks)
			.where(eq(tasks.runId, id));
		const options = { ...run.options };
		const n = counted?.failed ?? 0;
		if (n > 0) {
			if (options.stopOnFirstFailure || options.maxFailures !== undefined) {
				options.stopOnFirstFailure = false;
				options.maxFailures = Math.max(options.maxFailures ?? 0, n);
			}
			if (options.maxFailurePercent !== undefined) {
				options.maxFailurePercent = Math.max(options.maxFailurePercent, Math.ceil((n * 100) / counted!.total));
			}
		}
		const [resumed] = await tx
			.update(runs)
			.set({ state: 'running', reason: null, options, startedAt: sql`coalesce(${runs.startedAt}, now())` })
			.where(eq(runs.id, id))
			.returning();
		return resumed!;
	});
	await recordEvent({ type: 'run.state', runId: id, data: { state: 'running', reason: null } });
	await recordAudit(actor, { action: 'run.resume', targetType: 'run', targetId: id });
	await dispatchRun(id);
	return run;
}

/** A new run of the same kind for just the nodes whose tasks failed or were rolled back. */
export async function retryFailed(actor: Actor, id: string): Promise<Run> {
	const run = await getRunRow(id);
	const failed = await db()
		.select({ nodeId: tasks.nodeId })
		.from(tasks)
		.where(and(eq(tasks.runId, id), inArray(tasks.state, failedTaskStates)))
		.orderBy(asc(tasks.phase), asc(tasks.seq));
	if (!failed.length) throw conflict(`Run #${run.number} has no failed tasks to retry`);
	const phases = new Map(
		(await db().select({ nodeId: tasks.nodeId, phase: tasks.phase }).from(tasks).where(eq(tasks.runId, id))).map(
			(t) => [t.nodeId, t.phase]
		)
	);
	return createRun(actor, {
		kind: run.kind,
		title: `Retry of #${run.number}: ${run.title}`,
		nodeIds: failed.map((f) => f.nodeId),
		params: run.params,
		scope: run.scope,
		options: { ...run.options },
		phaseOf: (nodeId) => phases.get(nodeId) ?? 0,
		parentRunId: run.id
	});
}
