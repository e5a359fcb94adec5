import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { PgBoss, fromPglite, type Job } from 'pg-boss';
import { databaseHandle } from '$lib/server/db';
import { log, loggableError } from '$lib/server/log';
import { registeredKinds } from './flows';

export interface EngineSettings {
	/** Tasks this instance executes at once, across all runs. */
	concurrency: number;
	/** How long a task's claim holds without renewal; after that another instance may recover the task. */
	leaseMs: number;
	/** Run the periodic sweep (recovery of expired leases, re-dispatch) this often. */
	sweepMs: number;
}

interface Runtime {
	boss: PgBoss;
	settings: EngineSettings;
}

/** Identifies this process in task leases; random so that a restarted console never mistakes old leases for its own. */
export const instanceId = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;

let runtime: Runtime | undefined;

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
 * otherwise) and creates a queue per registered flow. Workers are added by the runner.
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
					application_name: 'flotilla-engine'
				})
			: new PgBoss({
					db: fromPglite(handle.driver.client),
					backend: 'pglite',
					schema: 'pgboss',
					useListenNotify: true
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
				heartbeatSeconds: 10
			})
			.catch(async (err) => {
				// Another instance created it in the meantime.
				if (!(await boss.getQueue(queueName(kind)))) throw err;
			});
	}
	runtime = { boss, settings: s };
	return boss;
}

export async function stopBoss(): Promise<void> {
	const r = runtime;
	runtime = undefined;
	await r?.boss.stop({ graceful: false, close: true, timeout: 5_000 });
}

export async function workOn(kind: string, handler: (job: Job<{ taskId: string }>) => Promise<void>): Promise<void> {
	if (!runtime) throw new Error('The engine is not started');
	await runtime.boss.work<{ taskId: string }>(
		queueName(kind),
		{ localConcurrency: runtime.settings.concurrency, pollingIntervalSeconds: 1 },
		async ([job]) => handler(job!)
	);
}

export async function enqueueTasks(
	jobs: { kind: string; taskId: string; nodeId: string; jobId: string }[]
): Promise<void> {
	if (!runtime) throw new Error('The engine is not started');
	const byKind = Map.groupBy(jobs, (j) => j.kind);
	for (const [kind, list] of byKind) {
		await runtime.boss.insert(
			queueName(kind),
			list.map((j) => ({ id: j.jobId, data: { taskId: j.taskId }, singletonKey: j.nodeId }))
		);
	}
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
