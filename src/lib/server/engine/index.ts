import { and, eq, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { runs, tasks } from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';
import { closeWarmConnections } from '$lib/server/ssh/warm';
import { dispatchRun } from './dispatch';
import { drainEvents, eventBus } from './events';
import { registeredKinds } from './flows';
import { useQueueDepth } from './metrics';
import {
	acceptTasks,
	drainTasks,
	executeTask,
	fenceExpiringLeases,
	interruptRun,
	releaseLeases,
	renewLeases
} from './runner';
import {
	queueDepth,
	releaseSlot,
	startBoss,
	stopBoss,
	stopFetching,
	takeSlots,
	workOn,
	type EngineSettings
} from './runtime';

/*
 * The engine's one public face: everything outside engine/ imports from here (a test holds the rule:
 * tests/integration/boundaries.spec.ts). Domains register their flows and give the engine its node access;
 * routes and domains create and control runs and read what the engine records through these functions.
 */
export {
	instanceId,
	schedulePeriodic,
	stopPeriodic,
	workQueue,
	sendJob,
	type EngineSettings,
	type WorkQueueOptions
} from './runtime';
export { useNodeAccess, type NodeAccess } from './node-access';
export {
	registerFlow,
	flowFor,
	registeredKinds,
	StepFailed,
	type Flow,
	type Step,
	type StepContext,
	type TaskEnd
} from './flows';
export {
	createRun,
	createClaimedRun,
	getRun,
	listRuns,
	cancelRun,
	pauseRun,
	resumeRun,
	retryFailed,
	type RunSummary,
	type TaskWithSteps
} from './runs';
export { recordEvent, lastEventId, type EngineEvent, type NewEvent } from './events';
export { eventStream } from './stream';
export { pruneEngineRecords } from './retention';
export { registry as metricsRegistry } from './metrics';
export {
	outputBacklog,
	taskOutput,
	recentTasksOf,
	runNumbers,
	countFailedTasks,
	nodesWithActiveTasks,
	nodeIsBusy,
	busyNodes,
	nodeUntouchedSince,
	nodesWithHistory,
	readRunLog,
	type LogLine,
	type RunLogLine
} from './read';

/** Tasks dispatched this long ago whose job is gone from pg-boss are sent again (an exhausted retry, a deleted job). */
const STALE_DISPATCH_MS = 5 * 60_000;
const DEFAULT_SHUTDOWN_GRACE_MS = 30_000;

/** The lease timers run until the last task has settled; the sweep stops first. */
let timers: { leases: NodeJS.Timeout[]; sweep?: NodeJS.Timeout } = { leases: [] };
let engineSettings: EngineSettings | undefined;
let unsubscribe: (() => void) | undefined;
let sweeping = false;

/**
 * Starts this instance's engine: pg-boss with one queue and worker pool per registered flow, the event bus,
 * lease renewal, and the sweep that recovers tasks whose instance died. Register flows before calling.
 */
export async function startEngine(s: EngineSettings): Promise<void> {
	engineSettings = s;
	acceptTasks();
	await startBoss(s);
	await eventBus.start();
	useQueueDepth(queueDepth);
	// A cancel written by any instance reaches the tasks this instance runs at once; the run's row carries it
	// too (lease renewal and every step start read it), so a lost event only delays it.
	unsubscribe = eventBus.subscribe((e) => {
		if (e.type === 'run.state' && e.data.state === 'cancelled' && e.run_id) interruptRun(e.run_id, 'cancelled');
	});
	for (const kind of registeredKinds()) await workOn(kind, (job) => executeTask(job.data.taskId));
	// renewLeases logs its own failures: a renewal may answer after it has stopped waiting for it.
	const renew = setInterval(() => void renewLeases(), Math.max(250, Math.floor(s.leaseMs / 3)));
	const fence = setInterval(fenceExpiringLeases, 1_000);
	const sweep = setInterval(() => void sweepRuns(), s.sweepMs);
	timers = { leases: [renew, fence], sweep };
	for (const t of [renew, fence, sweep]) t.unref();
	void sweepRuns();
	log.info({ kinds: registeredKinds(), concurrency: s.concurrency }, 'engine started');
}

/**
 * Stops this instance's engine, draining: no new task starts, running steps may finish for up to
 * `shutdownGraceMs`, after which the ones still running are interrupted (their commands killed on the node).
 * Nothing is rolled back: each unfinished task stays `running`, and its lease is released so that another
 * instance (or this one after a restart) inspects and recovers it at once, exactly as after a crash. Leases are
 * renewed, and cancels heard, until every task here has settled.
 */
export async function stopEngine(): Promise<void> {
	clearInterval(timers.sweep);
	stopFetching();
	await drainTasks(engineSettings?.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS);
	for (const t of timers.leases) clearInterval(t);
	timers = { leases: [] };
	unsubscribe?.();
	const left = await releaseLeases().catch((err) => {
		log.warn({ err: loggableError(err) }, 'could not release the leases of unfinished tasks');
		return 0;
	});
	if (left) log.info({ tasks: left }, 'engine stopped with unfinished tasks; they are left for recovery');
	await stopBoss();
	await eventBus.stop();
	await drainEvents();
	closeWarmConnections();
}

/**
 * The safety net behind every fast path: takes over tasks whose owner's lease expired (within this
 * instance's free slots), re-sends tasks whose job was lost, and moves every running run forward (a crash
 * between a task's end and its dispatch).
 */
export async function sweepRuns(): Promise<void> {
	if (sweeping) return;
	sweeping = true;
	try {
		const orphans = await db()
			.select({ id: tasks.id })
			.from(tasks)
			.where(and(eq(tasks.state, 'running'), lt(tasks.leaseExpiresAt, sql`now()`)))
			.limit(500);
		const slots = takeSlots(orphans.length);
		for (const o of orphans.slice(0, slots)) {
			void executeTask(o.id)
				.catch((err) => log.debug({ err: loggableError(err), taskId: o.id }, 'recovery deferred'))
				.finally(releaseSlot);
		}
		// A task dispatched long ago is sent again only when its job is gone from pg-boss (an exhausted retry, a
		// deleted job; the job is inserted with the dispatch, so no task lacks one from the start). One whose job
		// still waits, say behind another task on its node, keeps that job: a second would run it twice.
		await db().execute(sql`
			update tasks set dispatched_at = null, job_id = null
			where state = 'queued' and dispatched_at < now() - ${`${STALE_DISPATCH_MS} milliseconds`}::interval
				and not exists (
					select 1 from pgboss.job j
					where j.id = tasks.job_id::uuid and j.state in ('created', 'retry', 'active')
				)`);
		const live = await db()
			.select({ id: runs.id })
			.from(runs)
			.where(or(inArray(runs.state, ['queued', 'running']), and(eq(runs.state, 'cancelled'), isNull(runs.endedAt))))
			.limit(1_000);
		for (const r of live) await dispatchRun(r.id);
	} catch (err) {
		log.warn({ err: loggableError(err) }, 'engine sweep failed');
	} finally {
		sweeping = false;
	}
}
