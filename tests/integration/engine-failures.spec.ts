import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, queryRows, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes, runs, taskSteps, tasks } from '../../src/lib/server/db/schema';
import { startEngine, stopEngine, sweepRuns } from '../../src/lib/server/engine';
import { registerFlow, type Flow } from '../../src/lib/server/engine/flows';
import { registerFleet } from '../../src/lib/server/fleet/register';
import { cancelRun, createRun, getRun } from '../../src/lib/server/engine/runs';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { sh } from '../../src/lib/server/ssh/shell';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';

/**
 * The engine's failure paths on real OpenSSH hosts, where what matters is a process on the node: a cancel, a
 * deadline and a shutdown each leave no command running, an interrupted step is waited for (its own clean-up
 * runs) before any undo starts, and the order of what ran is read from a log the commands write on the host.
 */

interface Params {
	/** A file under the host's /root that every command appends to. */
	log: string;
	/** A number unique to the test, in the argv of the command that hangs, so that /proc finds it. */
	marker: number;
	work_deadline_ms?: number;
	/** The work step waits for this file (under /root) instead of hanging. */
	go?: string;
	inspect?: 'completed' | 'restart' | 'rollback';
}

const append = (log: string, line: string) => sh`echo ${line} >> ${`/root/${log}`}`;

/**
 * prepare → work → finish. `work` hangs (or waits for `go`), and when TERM reaches it, takes half a second to
 * clean up before it exits, as real programs do: an undo that started before that clean-up ended would race it.
 */
const failureFlow: Flow<Params> = {
	kind: 'test-failures',
	parseParams: (p) => p as Params,
	steps: [
		{
			name: 'prepare',
			do: async (ctx) => void (await ctx.exec(append(ctx.params.log, 'prepare'))),
			undo: async (ctx) => void (await ctx.exec(append(ctx.params.log, 'undo-prepare')))
		},
		{
			name: 'work',
			async do(ctx) {
				const { log, marker, go } = ctx.params;
				const file = `/root/${log}`;
				const wait = go
					? sh`while [ ! -e ${`/root/${go}`} ]; do sleep 0.1; done; echo work-done >> ${file}`
					: sh`sleep ${String(marker)} & wait`;
				await ctx.exec(
					sh`trap ${`sleep 0.5; echo cleaned >> ${file}; exit 143`} TERM; echo started >> ${file}; ${wait}`,
					ctx.params.work_deadline_ms ? { deadlineMs: ctx.params.work_deadline_ms } : {}
				);
			},
			undo: async (ctx) => void (await ctx.exec(append(ctx.params.log, 'undo-work')))
		},
		{
			name: 'finish',
			do: async (ctx) => void (await ctx.exec(append(ctx.params.log, 'finish')))
		}
	],
	async inspect(ctx) {
		return ctx.params.inspect ?? 'rollback';
	}
};
registerFlow(failureFlow);
registerFleet();

let bed: Testbed;
let handle: DatabaseHandle;
const nodeOf = new Map<string, string>();

beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 180 });
	handle = await freshPostgres('flotilla_failures');
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	const cred = await createCredential(systemActor, { name: 'failures', privateKey: bed.clientPrivateKey });
	for (const h of bed.hosts) {
		const [row] = await db()
			.insert(nodes)
			.values({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned'
			})
			.returning({ id: nodes.id });
		nodeOf.set(h.name, row!.id);
	}
}, 120_000);

afterAll(async () => {
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await bed?.stop();
});

let engineRunning = false;
async function engine(shutdownGraceMs = 30_000) {
	await startEngine({ concurrency: 10, leaseMs: 3_000, sweepMs: 500, shutdownGraceMs });
	engineRunning = true;
}
afterEach(async () => {
	if (engineRunning) await stopEngine();
	engineRunning = false;
});

let counter = 0;
/** A fresh log and marker for one test on one host. */
function scenario(host: TestHost) {
	counter++;
	const log = `failures-${counter}-${randomBytes(3).toString('hex')}.log`;
	const marker = 60_000 + Math.floor(Math.random() * 30_000);
	const path = join(host.root, 'root', log);
	return {
		log,
		marker,
		lines: () => (existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n') : []),
		/** Processes of the hanging command still alive on the host (its namespace's processes are ours to see). */
		alive: () => {
			try {
				return execFileSync('pgrep', ['-f', `sleep ${marker}`], { encoding: 'utf8' }).trim();
			} catch {
				return '';
			}
		},
		release: (go: string) => writeFileSync(join(host.root, 'root', go), '')
	};
}

const stepsOf = async (runId: string) =>
	(await getRun(runId)).tasks[0]!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`);

async function start(host: TestHost, params: Omit<Params, 'log' | 'marker'>, s: ReturnType<typeof scenario>) {
	const run = await createRun(systemActor, {
		kind: 'test-failures',
		title: 'failure path',
		nodeIds: [nodeOf.get(host.name)!],
		params: { ...params, log: s.log, marker: s.marker }
	});
	await waitFor('the work step to start on the host', async () => s.lines().includes('started'));
	return run;
}

describe('an interrupted step on a real host', () => {
	it('a cancel kills the command, waits for its clean-up, then undoes that step and the ones before it', async () => {
		await engine();
		const [host] = bed.hosts;
		const s = scenario(host!);
		const run = await start(host!, {}, s);
		await cancelRun(systemActor, run.id);
		const done = await waitForRun(run.id, ['cancelled']);
		expect(done.tasks[0]!.state).toBe('cancelled');
		// The clean-up the command ran on TERM ended before any undo began, and the interrupted step was undone too.
		expect(s.lines()).toEqual(['prepare', 'started', 'cleaned', 'undo-work', 'undo-prepare']);
		expect(s.alive()).toBe('');
		expect(await stepsOf(run.id)).toEqual([
			'do:prepare:succeeded',
			'do:work:cancelled',
			'undo:work:succeeded',
			'undo:prepare:succeeded'
		]);
	});

	it('a deadline does the same: the command is dead and cleaned up before its undo', async () => {
		await engine();
		const [, host] = bed.hosts;
		const s = scenario(host!);
		const run = await start(host!, { work_deadline_ms: 2_000 }, s);
		const done = await waitForRun(run.id, ['failed']);
		expect(done.tasks[0]!.state).toBe('rolled_back');
		expect(done.tasks[0]!.error).toMatch(/^work: /);
		expect(s.lines()).toEqual(['prepare', 'started', 'cleaned', 'undo-work', 'undo-prepare']);
		expect(s.alive()).toBe('');
	});
});

describe('a console that stops', () => {
	it('drains: the running step finishes, no further step starts, and nothing is rolled back', async () => {
		await engine(120_000);
		const [host] = bed.hosts;
		const s = scenario(host!);
		const run = await start(host!, { go: `go-${s.marker}` }, s);
		const stopping = stopEngine();
		engineRunning = false;
		// The step goes on while the console drains; it ends only when the test lets it.
		s.release(`go-${s.marker}`);
		await stopping;
		expect(s.lines()).toEqual(['prepare', 'started', 'work-done']);
		const [task] = await db()
			.select({ state: tasks.state, released: sql<boolean>`${tasks.leaseExpiresAt} <= now()` })
			.from(tasks)
			.where(eq(tasks.runId, run.id));
		expect(task!.state).toBe('running');
		// Its lease was given up (by the database's clock), so that another console recovers it at once.
		expect(task!.released).toBe(true);
		expect(await stepsOf(run.id)).toEqual(['do:prepare:succeeded', 'do:work:succeeded']);

		// A console that starts again recovers it: inspected, and (as this flow's inspect says) rolled back.
		await engine();
		const done = await waitForRun(run.id, ['failed']);
		expect(done.tasks[0]!.state).toBe('rolled_back');
		expect(s.lines()).toEqual(['prepare', 'started', 'work-done', 'undo-work', 'undo-prepare']);
	});

	it('after its grace, kills the command still running and leaves the task for recovery, undoing nothing', async () => {
		await engine(1_000);
		const [, host] = bed.hosts;
		const s = scenario(host!);
		const run = await start(host!, {}, s);
		await stopEngine();
		engineRunning = false;
		expect(s.alive()).toBe('');
		expect(s.lines()).toEqual(['prepare', 'started', 'cleaned']);
		const [task] = await db().select().from(tasks).where(eq(tasks.runId, run.id));
		expect(task!.state).toBe('running');
		const steps = await db().select().from(taskSteps).where(eq(taskSteps.taskId, task!.id));
		expect(steps.map((r) => `${r.phase}:${r.name}:${r.state}`)).toEqual(['do:prepare:succeeded', 'do:work:failed']);
		expect(steps[1]!.error).toBe('The console is shutting down');
	});
});

describe('a database that stops answering', () => {
	it('stops the task before its lease can run out, killing its command; recovered once the database is back', async () => {
		await engine();
		const [host] = bed.hosts;
		const s = scenario(host!);
		const run = await start(host!, {}, s);
		// From now on every lease renewal fails, as against an unreachable database; the rest of the database
		// still answers, so that the test can watch.
		await db().execute(sql`create function refuse_renewal() returns trigger language plpgsql
			as $$ begin raise exception 'the database is unreachable (test)'; end $$`);
		await db().execute(sql`create trigger refuse_renewal before update on tasks for each row
			when (old.lease_owner = new.lease_owner and old.lease_expires_at is distinct from new.lease_expires_at)
			execute function refuse_renewal()`);
		try {
			// Left alone, the command would run for the whole of its marker's seconds.
			await waitFor('the command stopped and cleaned up on the host', async () => s.lines().includes('cleaned'));
			expect(s.alive()).toBe('');
			expect(s.lines()).toEqual(['prepare', 'started', 'cleaned']);
		} finally {
			await db().execute(sql`drop trigger refuse_renewal on tasks`);
			await db().execute(sql`drop function refuse_renewal()`);
		}
		// Its lease ran out unrenewed: the sweep recovers it (this flow's inspect says roll back).
		const done = await waitForRun(run.id, ['failed']);
		expect(done.tasks[0]!.state).toBe('rolled_back');
		expect(s.lines()).toEqual(['prepare', 'started', 'cleaned', 'undo-work', 'undo-prepare']);
	});

	it('a renewal that hangs keeps no later renewal from starting: the task keeps its lease', async () => {
		await engine();
		// The first lease renewal from now on hangs before it touches a row (as on a connection that died
		// without a reset); the renewals after it are answered.
		await db().execute(sql`create function hang_renewal() returns trigger language plpgsql
			as $$ begin
				if current_query() like '%update tasks set lease_expires_at%' and pg_try_advisory_xact_lock(4242) then
					perform pg_sleep(600);
				end if;
				return null;
			end $$`);
		await db().execute(sql`create trigger hang_renewal before update on tasks for each statement
			execute function hang_renewal()`);
		const [host] = bed.hosts;
		const s = scenario(host!);
		try {
			const run = await start(host!, { go: `go-${s.marker}` }, s);
			await waitFor('a renewal hanging', async () => {
				const [row] = await queryRows<{ n: number }>(
					sql`select count(*)::int as n from pg_stat_activity where wait_event = 'PgSleep'`
				);
				return row!.n > 0;
			});
			const leaseOf = async () => {
				const [row] = await db()
					.select({ at: tasks.leaseExpiresAt, state: tasks.state })
					.from(tasks)
					.where(eq(tasks.runId, run.id));
				expect(row!.state, 'the task is still running, its lease held').toBe('running');
				return row!.at!.getTime();
			};
			// Renewed again and again while that renewal still hangs, so never stopped as a lost lease.
			let last = await leaseOf();
			for (const time of ['once', 'twice']) {
				const before = last;
				last = await waitFor(`renewed ${time} more`, async () => {
					const at = await leaseOf();
					return at > before && at;
				});
			}
			s.release(`go-${s.marker}`);
			const done = await waitForRun(run.id, ['succeeded']);
			expect(done.tasks[0]!.state).toBe('succeeded');
			expect(s.lines()).toEqual(['prepare', 'started', 'work-done', 'finish']);
		} finally {
			await db().execute(sql`select pg_cancel_backend(pid) from pg_stat_activity where wait_event = 'PgSleep'`);
			await db().execute(sql`drop trigger hang_renewal on tasks`);
			await db().execute(sql`drop function hang_renewal()`);
		}
	});
});

describe('recovery after a crash', () => {
	it('never restarts a task of a run cancelled meanwhile: what started is rolled back and the task is cancelled', async () => {
		await engine();
		const [host] = bed.hosts;
		const s = scenario(host!);
		// As a console that died mid-step leaves it, and an operator's cancel after: the run cancelled, the task
		// still running under the dead console's expired lease, its first step on record as started. Written in
		// one transaction, as the engine writes a run with its tasks: the engine's own sweep would otherwise end
		// a cancelled run it found with no task yet.
		const { run, task } = await db().transaction(async (tx) => {
			const [run] = await tx
				.insert(runs)
				.values({
					kind: 'test-failures',
					title: 'crashed',
					createdBy: 'test',
					state: 'cancelled',
					params: { log: s.log, marker: s.marker, inspect: 'restart' },
					options: { concurrency: 5 }
				})
				.returning();
			const [task] = await tx
				.insert(tasks)
				.values({
					runId: run!.id,
					nodeId: nodeOf.get(host!.name)!,
					nodeName: host!.name,
					seq: 0,
					state: 'running',
					attempt: 1,
					leaseOwner: 'a-console-that-died',
					leaseExpiresAt: new Date(Date.now() - 1_000),
					startedAt: new Date()
				})
				.returning();
			await tx
				.insert(taskSteps)
				.values({ taskId: task!.id, name: 'prepare', phase: 'do', attempt: 1, state: 'running' });
			return { run, task };
		});
		await sweepRuns();
		const done = await waitForRun(run!.id, ['cancelled']);
		expect(done.tasks[0]!.state).toBe('cancelled');
		expect(await stepsOf(run!.id)).toEqual([
			'do:prepare:failed',
			'inspect:inspect:succeeded',
			'undo:prepare:succeeded'
		]);
		// Nothing of the update ran again on the host: only the undo of what had started.
		expect(s.lines()).toEqual(['undo-prepare']);
		const [after] = await db().select({ attempt: tasks.attempt }).from(tasks).where(eq(tasks.id, task!.id));
		expect(after!.attempt).toBe(2);
	});
});
