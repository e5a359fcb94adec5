import { and, asc, eq, inArray, isNull, sql } from 'drizzle-orm';
import { db, type Transaction as Tx } from '$lib/server/db';
import { runs, tasks, type Run, type RunState, type TaskState } from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';
import { terminalRunStates as finalRunStates, terminalTaskStates as finalTaskStates } from '$lib/states';
import { recordEvent, type NewEvent } from './events';
import { runFinished, tasksEndedUnrun } from './metrics';
import { engineStarted, enqueueTasks } from './runtime';

// The one list ($lib/states.ts), as the mutable arrays drizzle's inArray takes.
export const terminalTaskStates: TaskState[] = [...finalTaskStates];
export const failedTaskStates: TaskState[] = ['failed', 'rolled_back'];
export const terminalRunStates: RunState[] = [...finalRunStates];

interface Counts {
	total: number;
	terminal: number;
	failed: number;
	cancelled: number;
	inFlight: number;
}

/** Per run, the dispatch this instance is doing now, and whether another was asked for meanwhile. */
const dispatching = new Map<string, { again: boolean; settled: Promise<void> }>();

/**
 * Moves a run forward: starts it, hands its next tasks to pg-boss within its concurrency, pauses it when
 * failures pass its threshold, fails it when a critical phase failed, and ends it when every task ended.
 * Safe to call from anywhere at any time (after each task, on resume, from the periodic sweep, from
 * several instances at once): it works under a row lock on the run and only ever does what is missing.
 *
 * Calls that arrive while this instance is dispatching the run are folded into one more dispatch after it:
 * when hundreds of tasks end together, they cost a few dispatches, not hundreds queued on the run's lock.
 * Each caller's promise settles after a dispatch that started after its call.
 */
export function dispatchRun(runId: string): Promise<void> {
	// A process without a running engine (a script, a test) leaves dispatching to the engines' sweep.
	if (!engineStarted()) return Promise.resolve();
	const current = dispatching.get(runId);
	if (current) {
		current.again = true;
		return current.settled;
	}
	const entry = { again: false, settled: Promise.resolve() };
	dispatching.set(runId, entry);
	entry.settled = (async () => {
		try {
			do {
				entry.again = false;
				await dispatchOnce(runId);
			} while (entry.again);
		} finally {
			dispatching.delete(runId);
		}
	})();
	return entry.settled;
}

/** The jobs of a dispatch could not be added: the dispatch is undone, and the sweep's next one tries again. */
class NotEnqueued extends Error {}

async function dispatchOnce(runId: string): Promise<void> {
	const pendingEvents: NewEvent[] = [];
	try {
		await dispatchInTransaction(runId, pendingEvents);
	} catch (err) {
		if (!(err instanceof NotEnqueued)) throw err;
		log.error({ err: loggableError(err.cause), runId }, 'could not enqueue tasks');
		return;
	}
	for (const e of pendingEvents) void recordEvent(e);
}

async function dispatchInTransaction(runId: string, pendingEvents: NewEvent[]): Promise<void> {
	await db().transaction(async (tx) => {
		// NO KEY UPDATE, as every lock the engine takes on a run: they exclude each other, but not the key-share lock
		// a foreign key check takes on the run (a claim writing its task twice in one transaction does), which would
		// otherwise wait for this transaction while it waits for that task's row: a deadlock.
		const [run] = await tx.select().from(runs).where(eq(runs.id, runId)).for('no key update');
		if (!run || terminalRunStates.includes(run.state) || run.state === 'paused') {
			if (run?.state === 'cancelled' && !run.endedAt) await endIfSettled(tx, run, pendingEvents);
			return;
		}
		const now = new Date();
		if (run.state === 'queued') {
			await tx.update(runs).set({ state: 'running', startedAt: now }).where(eq(runs.id, runId));
			run.state = 'running';
			pendingEvents.push({ type: 'run.state', runId, data: { state: 'running' } });
		}

		const phases = await countByPhase(tx, runId);
		const all = sumCounts(phases);

		if (all.terminal === all.total) {
			await endRun(tx, run, all, pendingEvents);
			return;
		}

		const opts = run.options;
		const threshold = failureThresholdPassed(opts, all);
		if (threshold) {
			await tx.update(runs).set({ state: 'paused', reason: threshold }).where(eq(runs.id, runId));
			pendingEvents.push({ type: 'run.state', runId, data: { state: 'paused', reason: threshold } });
			return;
		}

		// Phases run one after the other; a failure in a critical phase (control-plane nodes) ends the run.
		const current = phases.find((p) => p.terminal < p.total)!;
		const criticalFailure = phases.find(
			(p) => p.phase < current.phase && p.failed > 0 && opts.criticalPhases?.includes(p.phase)
		);
		if (criticalFailure) {
			const reason = `${criticalFailure.failed} task(s) failed in phase ${criticalFailure.phase}, which must succeed before the rest`;
			await skipQueued(tx, run, reason, pendingEvents);
			await tx.update(runs).set({ reason }).where(eq(runs.id, runId));
			run.reason = reason;
			return;
		}
		const free = opts.concurrency - all.inFlight;
		if (free <= 0) return;
		const next = await tx
			.select({ id: tasks.id, nodeId: tasks.nodeId })
			.from(tasks)
			.where(
				and(
					eq(tasks.runId, runId),
					eq(tasks.phase, current.phase),
					eq(tasks.state, 'queued'),
					isNull(tasks.dispatchedAt)
				)
			)
			.orderBy(asc(tasks.seq))
			.limit(free);
		if (!next.length) return;
		const sent = await tx
			.update(tasks)
			.set({ dispatchedAt: now, jobId: sql`gen_random_uuid()::text` })
			.where(
				inArray(
					tasks.id,
					next.map((t) => t.id)
				)
			)
			.returning({ taskId: tasks.id, nodeId: tasks.nodeId, jobId: tasks.jobId });
		// In the run's order, as selected: pg-boss hands out a batch's jobs in insertion order.
		const order = new Map(next.map((t, i) => [t.id, i]));
		sent.sort((a, b) => order.get(a.taskId)! - order.get(b.taskId)!);
		// With the dispatch, or not at all: a dispatched task always has its job (see enqueueTasks).
		await enqueueTasks(
			tx,
			sent.map((j) => ({ taskId: j.taskId, nodeId: j.nodeId, jobId: j.jobId!, kind: run.kind }))
		).catch((err) => {
			throw new NotEnqueued('could not enqueue tasks', { cause: err });
		});
	});
}

function failureThresholdPassed(opts: Run['options'], c: Counts): string | null {
	if (c.failed === 0) return null;
	if (opts.stopOnFirstFailure) return `Paused: a task failed and the run stops on the first failure`;
	if (opts.maxFailures !== undefined && c.failed > opts.maxFailures) {
		return `Paused: ${c.failed} tasks failed, more than the ${opts.maxFailures} allowed`;
	}
	if (opts.maxFailurePercent !== undefined && (c.failed * 100) / c.total > opts.maxFailurePercent) {
		return `Paused: ${c.failed} of ${c.total} tasks failed, more than ${opts.maxFailurePercent}%`;
	}
	return null;
}

async function skipQueued(tx: Tx, run: Run, reason: string, out: NewEvent[]): Promise<void> {
	const skipped = await tx
		.update(tasks)
		.set({ state: 'skipped', error: reason, endedAt: new Date() })
		.where(and(eq(tasks.runId, run.id), eq(tasks.state, 'queued')))
		.returning({ id: tasks.id, nodeId: tasks.nodeId, nodeName: tasks.nodeName });
	for (const t of skipped) {
		out.push({
			type: 'task.state',
			runId: run.id,
			taskId: t.id,
			nodeId: t.nodeId,
			data: { state: 'skipped', node: t.nodeName, error: reason }
		});
	}
	tasksEndedUnrun(run.kind, 'skipped', skipped.length);
	if (skipped.length) await endIfSettled(tx, run, out);
}

/** The run's tasks counted per phase, lowest phase first: one query serves dispatching and ending. */
async function countByPhase(tx: Tx, runId: string): Promise<(Counts & { phase: number })[]> {
	return tx
		.select({
			phase: tasks.phase,
			total: sql<number>`count(*)::int`,
			terminal: sql<number>`count(*) filter (where ${inArray(tasks.state, terminalTaskStates)})::int`,
			failed: sql<number>`count(*) filter (where ${inArray(tasks.state, failedTaskStates)})::int`,
			cancelled: sql<number>`count(*) filter (where ${tasks.state} = 'cancelled')::int`,
			inFlight: sql<number>`count(*) filter (where ${tasks.state} = 'running' or (${tasks.state} = 'queued' and ${tasks.dispatchedAt} is not null))::int`
		})
		.from(tasks)
		.where(eq(tasks.runId, runId))
		.groupBy(tasks.phase)
		.orderBy(asc(tasks.phase));
}

function sumCounts(phases: Counts[]): Counts {
	const all: Counts = { total: 0, terminal: 0, failed: 0, cancelled: 0, inFlight: 0 };
	for (const p of phases) for (const k of Object.keys(all) as (keyof Counts)[]) all[k] += p[k];
	return all;
}

async function endIfSettled(tx: Tx, run: Run, out: NewEvent[]): Promise<void> {
	const counts = sumCounts(await countByPhase(tx, run.id));
	if (counts.terminal === counts.total) await endRun(tx, run, counts, out);
}

async function endRun(tx: Tx, run: Run, c: Counts, out: NewEvent[]): Promise<void> {
	const state: RunState = run.state === 'cancelled' ? 'cancelled' : c.failed > 0 || run.reason ? 'failed' : 'succeeded';
	const reason = state === 'failed' && !run.reason ? `${c.failed} of ${c.total} tasks failed` : (run.reason ?? null);
	await tx.update(runs).set({ state, reason, endedAt: new Date() }).where(eq(runs.id, run.id));
	out.push({ type: 'run.state', runId: run.id, data: { state, reason, ended: true } });
	runFinished(run.kind, state);
}
