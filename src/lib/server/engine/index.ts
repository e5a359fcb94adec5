import { and, eq, inArray, isNull, lt, or, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { runs, tasks } from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';
import { dispatchRun } from './dispatch';
import { drainEvents, eventBus } from './events';
import { registeredKinds } from './flows';
import { useQueueDepth } from './metrics';
import { activeTaskCount, executeTask, interruptRun, renewLeases } from './runner';
import { queueDepth, startBoss, stopBoss, workOn, type EngineSettings } from './runtime';

export { instanceId } from './runtime';

/** Tasks dispatched this long ago whose job never ran are sent again (a lost insert, an exhausted retry). */
const STALE_DISPATCH_MS = 5 * 60_000;

let timers: NodeJS.Timeout[] = [];
let unsubscribe: (() => void) | undefined;
let sweeping = false;

/**
 * Starts this instance's engine: pg-boss with one queue and worker pool per registered flow, the event bus,
 * lease renewal, and the sweep that recovers tasks whose instance died. Register flows before calling.
 */
export async function startEngine(s: EngineSettings): Promise<void> {
	await startBoss(s);
	await eventBus.start();
	useQueueDepth(queueDepth);
	// A cancel written by any instance reaches the tasks this instance runs.
	unsubscribe = eventBus.subscribe((e) => {
		if (e.type === 'run.state' && e.data.state === 'cancelled' && e.run_id) interruptRun(e.run_id, 'cancelled');
	});
	for (const kind of registeredKinds()) await workOn(kind, (job) => executeTask(job.data.taskId));
	const renew = setInterval(
		() => renewLeases().catch((err) => log.warn({ err: loggableError(err) }, 'lease renewal failed')),
		Math.max(250, Math.floor(s.leaseMs / 3))
	);
	const sweep = setInterval(() => void sweepRuns(), s.sweepMs);
	timers = [renew, sweep];
	for (const t of timers) t.unref();
	void sweepRuns();
	log.info({ kinds: registeredKinds(), concurrency: s.concurrency }, 'engine started');
}

/**
 * Stops taking work. Tasks still running are left to their leases: once those expire, another instance
 * (or this one after a restart) inspects and recovers them, exactly as after a crash.
 */
export async function stopEngine(): Promise<void> {
	for (const t of timers) clearInterval(t);
	timers = [];
	unsubscribe?.();
	await stopBoss();
	await eventBus.stop();
	await drainEvents();
	if (activeTaskCount())
		log.info({ tasks: activeTaskCount() }, 'engine stopped with tasks in flight; they will be recovered');
}

/**
 * The safety net behind every fast path: takes over tasks whose owner's lease expired, re-sends tasks whose
 * job was lost, and moves every running run forward (a crash between a task's end and its dispatch).
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
		for (const o of orphans) {
			void executeTask(o.id).catch((err) => log.debug({ err: loggableError(err), taskId: o.id }, 'recovery deferred'));
		}
		await db()
			.update(tasks)
			.set({ dispatchedAt: null, jobId: null })
			.where(
				and(
					eq(tasks.state, 'queued'),
					lt(tasks.dispatchedAt, sql`now() - ${`${STALE_DISPATCH_MS} milliseconds`}::interval`)
				)
			);
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
