import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { PgBoss, fromPglite, type Db, type Job } from 'pg-boss';
import { sql } from 'drizzle-orm';
import { databaseHandle, rowsOf, type Database } from '$lib/server/db';
import { log, loggableError } from '$lib/server/log';
import { registeredKinds } from './flows';
import { GroupCommit } from './group-commit';

export interface EngineSettings {
	/** Tasks this instance executes at once, across all runs. */
	concurrency: number;
	/** How long a task's claim holds without renewal; after that another instance may recover the task. */
	leaseMs: number;
	/** Run the periodic sweep (recovery of expired leases, re-dispatch) this often. */
	sweepMs: number;
	/** On shutdown, how long running steps may go on before they are interrupted and left for recovery (default 30 s). */
	shutdownGraceMs?: number;
}

interface Runtime {
	boss: PgBoss;
	settings: EngineSettings;
	pumps: Map<string, JobPump>;
	/** Tasks this instance runs now, across every queue: together they stay within `settings.concurrency`. */
	inFlight: { count: number };
	stopListening?: () => Promise<void>;
	/** The periodic jobs this instance takes part in (`schedulePeriodic`), by queue: each one's ticker. */
	periodic: Map<string, NodeJS.Timeout>;
}

/** Identifies this process in task leases; random so that a restarted console never mistakes old leases for its own. */
export const instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

let runtime: Runtime | undefined;

/** Sent after jobs are inserted, so that every instance's pump for that kind fetches at once. */
const JOBS_CHANNEL = 'flotilla_jobs';
/** Without a wake-up, a pump looks for work this often (jobs retried later, a missed notification). */
const POLL_MS = 1_000;
/** The queues' heartbeatSeconds: a job not touched for this long is failed by pg-boss (its instance died). */
const HEARTBEAT_SECONDS = 10;
/**
 * How often pg-boss looks for jobs whose heartbeat ran out (its default is 60 s). A job held by a console
 * that died keeps its node's singleton slot until then, so new runs on that node wait at most this long
 * past the heartbeat. (The task itself is recovered earlier, through its lease: see the sweep.)
 */
const SUPERVISE_SECONDS = 10;

export const queueName = (kind: string) => `flotilla-${kind}`;

export function settings(): EngineSettings {
	if (!runtime) throw new Error('The engine is not started');
	return runtime.settings;
}

export function engineStarted(): boolean {
	return runtime !== undefined;
}

/**
 * Starts pg-boss on the console's database (its own pool on PostgreSQL, PGlite's one connection
 * otherwise) and creates a queue per registered flow. The runner adds a pump per queue (`workOn`).
 */
export async function startBoss(s: EngineSettings): Promise<PgBoss> {
	const handle = databaseHandle();
	const boss =
		handle.driver.kind === 'postgres'
			? new PgBoss({
					connectionString: handle.driver.url,
					max: 4,
					schema: 'pgboss',
					useListenNotify: true,
					superviseIntervalSeconds: SUPERVISE_SECONDS,
					application_name: 'flotilla-engine'
				})
			: new PgBoss({
					db: fromPglite(handle.driver.client),
					backend: 'pglite',
					schema: 'pgboss',
					useListenNotify: true,
					superviseIntervalSeconds: SUPERVISE_SECONDS
				});
	boss.on('error', (err) => log.warn({ err: loggableError(err) }, 'pg-boss error'));
	await boss.start();
	for (const kind of registeredKinds()) {
		if (await boss.getQueue(queueName(kind))) continue;
		await boss
			.createQueue(queueName(kind), {
				// One active job per node and queue; the tasks table's unique index extends that across queues.
				policy: 'singleton',
				notify: true,
				// A busy node or a task another instance still holds is retried later, not failed.
				retryLimit: 1_000,
				retryDelay: 2,
				// The hard stop: a job still active after a day is expired whatever it is doing.
				expireInSeconds: 24 * 60 * 60,
				// A crashed instance stops heartbeating; pg-boss then frees the node's singleton slot.
				heartbeatSeconds: HEARTBEAT_SECONDS
			})
			.catch(async (err) => {
				// Another instance created it in the meantime.
				if (!(await boss.getQueue(queueName(kind)))) throw err;
			});
	}
	const inFlight = { count: 0 };
	const pumps = new Map<string, JobPump>();
	runtime = { boss, settings: s, pumps, inFlight, periodic: new Map() };
	// Jobs inserted by any instance wake this one's pump for their kind.
	runtime.stopListening = await handle.listen(JOBS_CHANNEL, (kind) => pumps.get(kind)?.wake());
	return boss;
}

/** Stops fetching jobs; the jobs already held go on and are completed as their tasks end (a draining shutdown). */
export function stopFetching(): void {
	for (const pump of runtime?.pumps.values() ?? []) pump.stopFetching();
}

/**
 * Takes up to `wanted` of this instance's free slots for work that does not come through a queue (the sweep's
 * recovery of orphaned tasks), so that it stays within the console's concurrency. Give each back with `releaseSlot`.
 */
export function takeSlots(wanted: number): number {
	if (!runtime) return 0;
	const n = Math.max(0, Math.min(wanted, runtime.settings.concurrency - runtime.inFlight.count));
	runtime.inFlight.count += n;
	return n;
}

export function releaseSlot(): void {
	if (!runtime) return;
	runtime.inFlight.count--;
	for (const pump of runtime.pumps.values()) pump.slotFreed();
}

export async function stopBoss(): Promise<void> {
	const r = runtime;
	runtime = undefined;
	if (!r) return;
	await stopPeriodicOf(r);
	await Promise.all([...r.pumps.values()].map((pump) => pump.stop()));
	await r.stopListening?.().catch(() => {});
	await r.boss.stop({ graceful: false, close: true, timeout: 5_000 });
}

export const periodicQueueName = (name: string) => `flotilla-periodic-${name}`;
/** A periodic job's next period is sent at most this long after it began (and at most once per period). */
const PERIODIC_TICK_SECONDS = 5;

/**
 * Runs `handler` once every `everySeconds` across every console sharing the database (0 turns it off here),
 * through a pg-boss queue. Each console sends the period's job with `singletonSeconds`: pg-boss lets only one
 * job per period exist, whoever sends it, and one console's worker takes it. (pg-boss's own `schedule()` is
 * cron, a minute at the finest; the health sweep may run every few seconds.) The queue is `stately`: while one
 * turn runs, at most one more waits, so a turn longer than the period never overlaps the next, on any console.
 * A console that dies mid-turn stops heartbeating and pg-boss fails the job, which frees the queue; so does a
 * turn still running after two periods (15 minutes at least, 24 hours at most: pg-boss refuses a longer expiry,
 * which failed every tick of a daily job), as a hung turn would otherwise hold up every later one. A turn that throws is logged and failed, not retried: the next period runs it again. What `handler`
 * returns is kept as the job's output (pg-boss's job table, for a day).
 */
export async function schedulePeriodic(
	name: string,
	everySeconds: number,
	handler: () => Promise<object>
): Promise<void> {
	const r = runtime;
	if (!r) throw new Error('The engine is not started');
	if (everySeconds <= 0) return;
	const queue = periodicQueueName(name);
	if (!(await r.boss.getQueue(queue))) {
		await r.boss
			.createQueue(queue, {
				policy: 'stately',
				notify: true,
				retryLimit: 0,
				// One job a period: a day of outcomes is plenty to look back on.
				deleteAfterSeconds: 24 * 60 * 60,
				heartbeatSeconds: HEARTBEAT_SECONDS
			})
			.catch(async (err) => {
				if (!(await r.boss.getQueue(queue))) throw err;
			});
	}
	await r.boss.work(queue, { pollingIntervalSeconds: PERIODIC_TICK_SECONDS, batchSize: 1 }, async () => {
		try {
			return await handler();
		} catch (err) {
			log.error({ err: loggableError(err), job: name }, 'periodic job failed');
			throw err;
		}
	});
	const send = () =>
		void r.boss
			.send(
				queue,
				{},
				{ singletonSeconds: everySeconds, expireInSeconds: Math.min(24 * 60 * 60, Math.max(15 * 60, 2 * everySeconds)) }
			)
			.catch((err) => log.warn({ err: loggableError(err), job: name }, 'periodic tick failed'));
	const ticker = setInterval(send, Math.min(everySeconds, PERIODIC_TICK_SECONDS) * 1000);
	ticker.unref();
	r.periodic.set(queue, ticker);
	send();
}

/** Stops this instance's periodic jobs, waiting for a turn it is running; other consoles carry on with them. */
export async function stopPeriodic(): Promise<void> {
	if (runtime) await stopPeriodicOf(runtime);
}

async function stopPeriodicOf(r: Runtime): Promise<void> {
	const queues = [...r.periodic.keys()];
	for (const ticker of r.periodic.values()) clearInterval(ticker);
	r.periodic.clear();
	await Promise.all(
		queues.map((queue) =>
			r.boss
				.offWork(queue, { wait: true })
				.catch((err) => log.warn({ err: loggableError(err), queue }, 'stopping a periodic job failed'))
		)
	);
}

export const workQueueName = (name: string) => `flotilla-queue-${name}`;

export interface WorkQueueOptions {
	/** Attempts after the first. */
	retryLimit: number;
	/** Seconds before the first retry; doubled (with jitter) each time when `retryBackoff`. */
	retryDelaySeconds: number;
	retryBackoff: boolean;
	/** The longest wait between two attempts. */
	retryDelayMaxSeconds?: number;
	/** An attempt still active after this long is failed (and retried). */
	expireInSeconds: number;
	/** Jobs this console works on at once. */
	concurrency: number;
}

/**
 * A durable queue shared by every console, for work outside runs (a delivery to a remote system): each job is
 * taken by one console, and one that throws is retried as `options` say. Call it at start-up on every console
 * that should take part, before `sendJob`. The handler's job data is what `sendJob` gave.
 */
export async function workQueue<T extends object>(
	name: string,
	options: WorkQueueOptions,
	handler: (data: T) => Promise<void>
): Promise<void> {
	const r = runtime;
	if (!r) throw new Error('The engine is not started');
	const queue = workQueueName(name);
	const settings = {
		retryLimit: options.retryLimit,
		retryDelay: options.retryDelaySeconds,
		retryBackoff: options.retryBackoff,
		// pg-boss refuses a maximum without backoff.
		...(options.retryBackoff && options.retryDelayMaxSeconds ? { retryDelayMax: options.retryDelayMaxSeconds } : {}),
		expireInSeconds: options.expireInSeconds,
		heartbeatSeconds: HEARTBEAT_SECONDS,
		// A week of outcomes to look back on.
		deleteAfterSeconds: 7 * 24 * 60 * 60
	};
	if (await r.boss.getQueue(queue)) await r.boss.updateQueue(queue, settings);
	else {
		await r.boss.createQueue(queue, { policy: 'standard', ...settings }).catch(async (err) => {
			if (!(await r.boss.getQueue(queue))) throw err;
		});
	}
	await r.boss.work<T>(
		queue,
		{ pollingIntervalSeconds: 1, batchSize: 1, localConcurrency: options.concurrency },
		async ([job]) => {
			if (job) await handler(job.data);
		}
	);
}

/**
 * Adds a job to a queue started with `workQueue`. With an `id`, a job already sent under it is not sent
 * again, whichever console sent it: the answer says whether this call added it.
 */
export async function sendJob<T extends object>(name: string, data: T, id?: string): Promise<boolean> {
	const r = runtime;
	if (!r) throw new Error('The engine is not started');
	return (await r.boss.send(workQueueName(name), data, id ? { id } : {})) !== null;
}

/** Runs `handler` for every job of a kind's queue, within the instance's concurrency. */
export async function workOn(kind: string, handler: (job: Job<{ taskId: string }>) => Promise<void>): Promise<void> {
	if (!runtime) throw new Error('The engine is not started');
	const pump = new JobPump(runtime.boss, kind, runtime.settings.concurrency, runtime.inFlight, handler);
	runtime.pumps.set(kind, pump);
	pump.start();
}

/**
 * Adds the jobs of tasks that `tx` marks dispatched, in `tx` itself: the jobs exist exactly when the dispatch
 * committed. Inserted after the commit, a console killed between the two left its tasks dispatched with no
 * job, holding their run's concurrency with nothing to run them until the sweep's stale-dispatch reset.
 */
export async function enqueueTasks(
	tx: Pick<Database, 'execute'>,
	jobs: { kind: string; taskId: string; nodeId: string; jobId: string }[]
): Promise<void> {
	if (!runtime) throw new Error('The engine is not started');
	const byKind = Map.groupBy(jobs, (j) => j.kind);
	for (const [kind, list] of byKind) {
		// pg-boss reads the queue's row from its cache here (filled at start and by createQueue): a read outside
		// `tx` would, on PGlite's one connection, wait for `tx` to end.
		await runtime.boss.insert(
			queueName(kind),
			list.map((j) => ({ id: j.jobId, data: { taskId: j.taskId }, singletonKey: j.nodeId })),
			{ db: inTransaction(tx) }
		);
		// Delivered at the commit, to every instance, the sender included, at about the same moment: the jobs go to
		// whichever has free slots first. Waking the sender's own pump directly would hand it every job it dispatches.
		await tx.execute(sql`select pg_notify(${JOBS_CHANNEL}, ${kind})`);
	}
}

/** pg-boss's statements run in a drizzle transaction: its `$n` placeholders become the statement's parameters. */
function inTransaction(tx: Pick<Database, 'execute'>): Db {
	return {
		async executeSql(text, values = []) {
			const parts = text.split(/\$(\d+)\b/);
			const query = sql.join(parts.map((part, i) => (i % 2 ? sql`${values[Number(part) - 1]}` : sql.raw(part))));
			return { rows: rowsOf(await tx.execute(query)) };
		}
	};
}

export async function queueDepth(): Promise<number> {
	if (!runtime) return 0;
	let depth = 0;
	for (const kind of registeredKinds()) {
		const q = await runtime.boss.getQueue(queueName(kind)).catch(() => null);
		depth += q?.queuedCount ?? 0;
	}
	return depth;
}

/**
 * Feeds one queue's jobs to the engine. pg-boss's own `work` runs one polling worker per unit of
 * concurrency, and every insert wakes all of them into a fetch of their own: with hundreds of tasks at
 * once that is hundreds of queries per dispatch. The pump instead fetches as many jobs as there are free
 * slots in one query, and completes and heartbeats the jobs it holds in batches.
 */
class JobPump {
	private readonly held = new Set<string>();
	private stopped = false;
	/** Fetches no more jobs, but still settles the ones it holds. */
	private fetching = true;
	private woken = false;
	/** It skipped a fetch for want of a free slot: the next slot freed wakes it. */
	private starved = false;
	private wakeUp: (() => void) | undefined;
	private heartbeat: NodeJS.Timeout | undefined;
	private readonly queue: string;
	private readonly completions: GroupCommit<string, void>;

	constructor(
		private readonly boss: PgBoss,
		kind: string,
		private readonly capacity: number,
		private readonly inFlight: { count: number },
		private readonly handler: (job: Job<{ taskId: string }>) => Promise<void>
	) {
		this.queue = queueName(kind);
		this.completions = new GroupCommit<string, void>(async (ids) => {
			await this.boss.complete(this.queue, ids);
			return ids.map(() => undefined);
		});
	}

	start(): void {
		// Jobs this instance holds stay theirs: pg-boss fails a job whose heartbeat stops (a dead instance).
		this.heartbeat = setInterval(
			() => {
				if (!this.held.size) return;
				this.boss
					.touch(this.queue, [...this.held])
					.catch((err) => log.warn({ err: loggableError(err) }, 'job heartbeat failed'));
			},
			(HEARTBEAT_SECONDS * 1000) / 3
		);
		this.heartbeat.unref();
		void this.loop();
	}

	/**
	 * Stops fetching, and gives back the jobs still held, as pg-boss's own workers do when stopped: a held
	 * job keeps its node's singleton slot until its heartbeat runs out. Their tasks keep their leases and
	 * are recovered by whichever instance takes them once the lease expires, as after a crash.
	 */
	async stop(): Promise<void> {
		this.stopped = true;
		clearInterval(this.heartbeat);
		this.wake();
		if (this.held.size) {
			await this.boss
				.fail(this.queue, [...this.held], { message: 'The console stopped' })
				.catch((err) => log.warn({ err: loggableError(err) }, 'could not give back held jobs'));
		}
	}

	stopFetching(): void {
		this.fetching = false;
		this.wake();
	}

	wake(): void {
		this.woken = true;
		this.wakeUp?.();
	}

	/**
	 * A slot became free. Only a pump that stopped fetching for want of one looks again at once; one with
	 * slots to spare waits, like every other instance, for the next notification, so that an instance
	 * whose tasks end often does not take every job by fetching more often than the rest.
	 */
	slotFreed(): void {
		if (!this.starved) return;
		this.starved = false;
		this.wake();
	}

	private async loop(): Promise<void> {
		while (!this.stopped && this.fetching) {
			this.woken = false;
			const free = this.capacity - this.inFlight.count;
			if (free <= 0) this.starved = true;
			else {
				// The slots are reserved while the fetch is out, so that the pumps of other kinds fetching at the same
				// moment do not count them free too; what the fetch did not fill is released after it.
				this.inFlight.count += free;
				let jobs: Job<{ taskId: string }>[] = [];
				try {
					jobs = await this.boss.fetch<{ taskId: string }>(this.queue, { batchSize: free });
				} catch (err) {
					if (!this.stopped) log.warn({ err: loggableError(err), queue: this.queue }, 'fetching jobs failed');
				}
				if (this.stopped || !this.fetching) {
					this.inFlight.count -= free;
					// Stopped while fetching: hand them back for whichever instance runs next.
					if (jobs.length)
						await this.boss
							.fail(
								this.queue,
								jobs.map((j) => j.id)
							)
							.catch(() => {});
					return;
				}
				this.inFlight.count -= free - jobs.length;
				for (const job of jobs) this.run(job);
				// Every slot is taken, and the queue may hold more: look again as soon as one frees.
				if (jobs.length === free) this.starved = true;
			}
			if (this.woken || this.stopped || !this.fetching) continue;
			await new Promise<void>((resolve) => {
				const timer = setTimeout(resolve, POLL_MS);
				this.wakeUp = () => {
					clearTimeout(timer);
					resolve();
				};
			});
			this.wakeUp = undefined;
		}
	}

	/** Runs a fetched job in the slot reserved for it, and frees the slot once the job is settled. */
	private run(job: Job<{ taskId: string }>): void {
		this.held.add(job.id);
		void this.handler(job)
			.then(
				() => (this.stopped ? undefined : this.completions.add(job.id)),
				// pg-boss retries it after the queue's retryDelay (a busy node, a task another instance holds).
				(err: Error) => (this.stopped ? undefined : this.boss.fail(this.queue, job.id, { message: err.message }))
			)
			.catch((err) => log.warn({ err: loggableError(err), queue: this.queue }, 'could not settle a job'))
			.finally(() => {
				this.held.delete(job.id);
				releaseSlot();
			});
	}
}
