import { randomBytes } from 'node:crypto';
import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, queryRows, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { events, nodes, runs, taskSteps, tasks, type RunOptions, type RunState } from '../../src/lib/server/db/schema';
import { ServiceError } from '../../src/lib/server/errors';
import { instanceId, startEngine, stopEngine, sweepRuns } from '../../src/lib/server/engine';
import { claimTask } from '../../src/lib/server/engine/claim';
import { dispatchRun } from '../../src/lib/server/engine/dispatch';
import { registerFlow, type Flow, type StepContext } from '../../src/lib/server/engine/flows';
import { registerFleet } from '../../src/lib/server/fleet/register';
import { executeTask, renewLeases } from '../../src/lib/server/engine/runner';
import { cancelRun, createRun, getRun, resumeRun } from '../../src/lib/server/engine/runs';
import { sh } from '../../src/lib/server/ssh/shell';
import { backends } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { sequenceFlow } from '../support/flows';
import { startSimFleet, type SimFleet } from '../support/sim-fleet';

/**
 * The engine's races, one test per defect: each forces its interleaving (rows written directly,
 * in-process gates, table locks) and asserts order and outcome, never durations.
 */

/** Resolves when `signal` aborts, by rejecting with its reason: a step that waits until it is interrupted. */
const untilAborted = (signal: AbortSignal) =>
	new Promise<never>((_, reject) => {
		if (signal.aborted) reject(signal.reason);
		else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
	});

/**
 * An in-process gate per task: `race-gated`'s step 2 reports that it began and then waits for the test to
 * open the gate (or for the task to be interrupted), so a test acts while the step is surely in flight.
 */
interface Gate {
	reached: Promise<void>;
	arrive(): void;
	opened: Promise<void>;
	open(): void;
}
const gates = new Map<string, Gate>();
function gateOf(taskId: string): Gate {
	let gate = gates.get(taskId);
	if (!gate) {
		let arrive!: () => void;
		let open!: () => void;
		const reached = new Promise<void>((r) => (arrive = r));
		const opened = new Promise<void>((r) => (open = r));
		gate = { reached, arrive, opened, open };
		gates.set(taskId, gate);
	}
	return gate;
}

/** Three steps, each remembering in the memo that it ran; step 2 waits at its task's gate. */
const gatedFlow: Flow = {
	kind: 'race-gated',
	steps: [
		{
			name: 'step-1',
			async do(ctx) {
				ctx.memo.step1 = 'done';
				await ctx.exec(sh`echo one`);
			}
		},
		{
			name: 'step-2',
			async do(ctx: StepContext) {
				ctx.memo.step2 = 'started';
				const gate = gateOf(ctx.task.id);
				gate.arrive();
				await Promise.race([gate.opened, untilAborted(ctx.signal)]);
				ctx.memo.step2 = 'done';
			}
		},
		{
			name: 'step-3',
			async do(ctx) {
				ctx.memo.step3 = 'done';
				await ctx.exec(sh`echo three`);
			}
		}
	]
};

/** Holds its node until the run is cancelled. */
const holdSteps: Flow['steps'] = [{ name: 'hold', do: (ctx) => untilAborted(ctx.signal), undo: async () => {} }];
const holdFlow: Flow = { kind: 'race-hold', steps: holdSteps };
/**
 * A stand-in for Code Sync's flow, so that `triggerUpdate` can create its runs here: what matters is which
 * runs it creates, not what they do on the nodes.
 */
const codeSyncStandIn: Flow = { kind: 'code-sync', steps: holdSteps };

/** A task recovered after a crash: its inspection says to run it again, and its one step takes a moment. */
const recoverFlow: Flow = {
	kind: 'race-recover',
	steps: [
		{
			name: 'work',
			async do(ctx) {
				await ctx.exec(sh`sleep 0.3`);
			}
		}
	],
	inspect: async () => 'restart'
};

registerFlow(sequenceFlow);
registerFlow(gatedFlow);
registerFlow(holdFlow);
registerFlow(codeSyncStandIn);
registerFlow(recoverFlow);
registerFleet();

const ENGINE = { concurrency: 50, leaseMs: 5_000, sweepMs: 1_000 };

/**
 * A second PostgreSQL session holding `table` in ACCESS EXCLUSIVE mode until released, to force an
 * interleaving: whatever reaches the table waits, and `waiting` lists the sessions then waiting for a lock
 * (found through a third session), with the statement each runs.
 */
async function holdTableLock(url: string, table: 'runs' | 'tasks') {
	const locker = postgres(url, { max: 1, onnotice: () => {} });
	const watcher = postgres(url, { max: 1, onnotice: () => {} });
	let release!: () => void;
	let locked!: (pid: number) => void;
	const lockerPid = new Promise<number>((r) => (locked = r));
	const holding = locker.begin(async (tx) => {
		await tx.unsafe(`lock table ${table} in access exclusive mode`);
		const [row] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
		locked(row!.pid);
		await new Promise<void>((r) => (release = r));
	});
	const pid = await Promise.race([lockerPid, holding.then(() => Promise.reject(new Error('no lock taken')))]);
	return {
		waiting: () =>
			watcher<{ pid: number; query: string }[]>`
				select pid, query from pg_stat_activity
				where datname = current_database() and wait_event_type = 'Lock' and pid <> ${pid}`,
		async release() {
			release();
			await holding;
			await locker.end();
			await watcher.end();
		}
	};
}

describe.each(backends)('engine races on $name', ({ name, open }) => {
	let handle: DatabaseHandle;
	let fleet: SimFleet;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		fleet = await startSimFleet(24, 'race');
		await startEngine(ENGINE);
	}, 60_000);
	afterAll(async () => {
		await stopEngine();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	/**
	 * A run and its tasks written directly, as another console (or a crash) would have left them. Its own
	 * concurrency is 0 unless given: no dispatch, the sweep's included, ever sends its queued tasks a job, so
	 * only what the test calls executes them.
	 */
	async function insertRun(
		kind: string,
		nodeIndexes: number[],
		o: { state?: RunState; options?: RunOptions; task?: Partial<typeof tasks.$inferInsert> } = {}
	) {
		// One transaction, as the engine writes them: a sweep that found the run with no task yet would end it.
		return db().transaction(async (tx) => {
			const [run] = await tx
				.insert(runs)
				.values({
					kind,
					title: `${kind} written directly`,
					createdBy: 'test',
					state: o.state ?? 'running',
					options: o.options ?? { concurrency: 0 },
					startedAt: new Date()
				})
				.returning();
			const rows = await tx
				.insert(tasks)
				.values(
					nodeIndexes.map((i, seq) => ({
						runId: run!.id,
						nodeId: fleet.nodeIds[i]!,
						nodeName: fleet.hosts[i]!.name,
						seq,
						...o.task
					}))
				)
				.returning();
			return { run: run!, tasks: rows };
		});
	}

	/** Ends a run left unfinished on purpose, so that its nodes are free for the tests after it. */
	async function endDirectly(runId: string) {
		await db()
			.update(tasks)
			.set({ state: 'cancelled', leaseOwner: null, leaseExpiresAt: null, endedAt: new Date() })
			.where(and(eq(tasks.runId, runId), inArray(tasks.state, ['queued', 'running'])));
		await db().update(runs).set({ state: 'cancelled', endedAt: new Date() }).where(eq(runs.id, runId));
	}

	const stepsOf = (taskId: string) =>
		db().select().from(taskSteps).where(eq(taskSteps.taskId, taskId)).orderBy(asc(taskSteps.id));
	const taskRow = async (taskId: string) => (await db().select().from(tasks).where(eq(tasks.id, taskId)))[0]!;
	const summary = (steps: { phase: string; name: string; state: string }[]) =>
		steps.map((s) => `${s.phase}:${s.name}:${s.state}`);

	it('one task executed twice at once in one process runs each step once, on its first attempt', async () => {
		const {
			run,
			tasks: [task]
		} = await insertRun('test-sequence', [0], { task: { state: 'queued' } });
		await Promise.all([executeTask(task!.id), executeTask(task!.id)]);
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('succeeded');
		expect(done.tasks[0]!.attempt).toBe(1);
		expect(summary(done.tasks[0]!.steps)).toEqual([
			'do:step-1:succeeded',
			'do:step-2:succeeded',
			'do:step-3:succeeded',
			'do:step-4:succeeded'
		]);
	});

	it('two claims of one task at once: exactly one is claimed', async () => {
		const {
			run,
			tasks: [task]
		} = await insertRun('test-sequence', [1], { task: { state: 'queued' } });
		const claims = await Promise.all([claimTask(task!.id), claimTask(task!.id)]);
		expect(claims.map((c) => c.kind).sort()).toEqual(['claimed', 'retry_later']);
		expect((await taskRow(task!.id)).attempt).toBe(1);
		await endDirectly(run.id);
	});

	it('lease renewal extends only tasks really executing; one left running unexecuted is recovered by the sweep', async () => {
		// Running, owned by this very instance, but executed by nothing here: as after a task end that could not be written.
		const orphan = await insertRun('test-sequence', [2], {
			options: { concurrency: 1 },
			task: {
				state: 'running',
				leaseOwner: instanceId,
				leaseExpiresAt: sql`now() + interval '1 minute'` as unknown as Date,
				attempt: 1,
				startedAt: new Date()
			}
		});
		const orphanTask = orphan.tasks[0]!;
		// Another task really executes meanwhile, held in its step 2.
		const real = await createRun(systemActor, {
			kind: 'race-gated',
			title: 'really runs',
			nodeIds: [fleet.nodeIds[3]!]
		});
		const [realTask] = await db().select().from(tasks).where(eq(tasks.runId, real.id));
		const gate = gateOf(realTask!.id);
		await gate.reached;
		// Both leases end at the same moment; a renewal moves only the executing task's.
		await db()
			.update(tasks)
			.set({ leaseExpiresAt: sql`now() + interval '3 seconds'` as unknown as Date })
			.where(inArray(tasks.id, [orphanTask.id, realTask!.id]));
		const leaseBefore = (await taskRow(orphanTask.id)).leaseExpiresAt!;
		await renewLeases();
		expect((await taskRow(realTask!.id)).leaseExpiresAt!.getTime()).toBeGreaterThan(leaseBefore.getTime());
		expect((await taskRow(orphanTask.id)).leaseExpiresAt).toEqual(leaseBefore);
		gate.open();
		expect((await waitForRun(real.id, ['succeeded', 'failed'])).state).toBe('succeeded');

		// Its lease runs out, and the sweep takes it over: nothing of it had started, so it ends failed.
		await waitFor('the orphan’s lease to run out', async () => {
			const [row] = await queryRows<{ expired: boolean }>(
				sql`select lease_expires_at < now() as expired from tasks where id = ${orphanTask.id}`
			);
			return row?.expired;
		});
		await sweepRuns();
		const recovered = await waitForRun(orphan.run.id, ['failed', 'succeeded']);
		expect(recovered.tasks[0]).toMatchObject({ state: 'failed', attempt: 2, leaseOwner: null });
		expect(recovered.tasks[0]!.error).toMatch(/console stopped mid-task/);
	});

	it('a cancel written only to the run’s row (no event) stops the running task, undoes it, and ends the run', async () => {
		const hung = fleet.hosts[4]!.name;
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'cancelled without an event',
			nodeIds: [fleet.nodeIds[4]!, fleet.nodeIds[5]!],
			params: { hang_at: 2, on: [hung] },
			options: { concurrency: 1 }
		});
		await waitFor('the task hanging in step 2', async () => {
			const r = await getRun(run.id);
			return r.tasks.find((t) => t.nodeName === hung)?.currentStep === 'step-2';
		});
		// What cancelRun's transaction writes, and nothing else: the run.state event is never recorded.
		await db().transaction(async (tx) => {
			await tx.update(runs).set({ state: 'cancelled', reason: 'Cancelled in the database' }).where(eq(runs.id, run.id));
			await tx
				.update(tasks)
				.set({ state: 'cancelled', error: 'Cancelled in the database', endedAt: new Date() })
				.where(and(eq(tasks.runId, run.id), eq(tasks.state, 'queued')));
		});
		// The hung command sleeps 600 s: the run can only end because the cancel reached the task.
		const done = await waitForRun(run.id, ['cancelled'], 20_000);
		expect(done.counts).toMatchObject({ total: 2, cancelled: 2 });
		const h = done.tasks.find((t) => t.nodeName === hung)!;
		expect(summary(h.steps)).toEqual([
			'do:step-1:succeeded',
			'do:step-2:cancelled',
			'undo:step-2:succeeded',
			'undo:step-1:succeeded'
		]);
		expect(done.tasks.find((t) => t.nodeName !== hung)!.steps).toEqual([]);
	});

	it('a task whose lease another owner took writes no step end, memo or further step, and is stopped', async () => {
		// Two tasks in step 2 lose their leases at once: one's step then returns by itself (its end must not be
		// written), the other's keeps waiting until the lease renewal stops it.
		const { run, tasks: taken } = await insertRun('race-gated', [6, 7], { task: { state: 'queued' } });
		const [returns, waits] = taken as [(typeof taken)[0], (typeof taken)[0]];
		const executions = Promise.all([executeTask(returns.id), executeTask(waits.id)]);
		await Promise.all([gateOf(returns.id).reached, gateOf(waits.id).reached]);
		const before = await Promise.all(
			taken.map(async (t) => ({ steps: await stepsOf(t.id), memo: (await taskRow(t.id)).memo }))
		);
		for (const b of before) {
			expect(summary(b.steps)).toEqual(['do:step-1:succeeded', 'do:step-2:running']);
			expect(b.memo).toEqual({ step1: 'done' });
		}
		await db()
			.update(tasks)
			.set({ leaseOwner: 'another-console', leaseExpiresAt: sql`now() + interval '1 hour'` as unknown as Date })
			.where(eq(tasks.runId, run.id));
		gateOf(returns.id).open();
		// Both executions settle: the first once its step returned, the second once the renewal stopped it.
		await executions;
		const after = await Promise.all(
			taken.map(async (t) => ({ steps: await stepsOf(t.id), memo: (await taskRow(t.id)).memo }))
		);
		expect(after).toEqual(before);
		for (const t of taken)
			expect(await taskRow(t.id)).toMatchObject({ state: 'running', leaseOwner: 'another-console' });
		const ends = await waitFor('both step-2 ends on record', async () => {
			const rows = await db()
				.select({ taskId: events.taskId, data: events.data })
				.from(events)
				.where(and(eq(events.runId, run.id), eq(events.type, 'step.ended')));
			const found = rows.filter((r) => r.data.name === 'step-2');
			return found.length === 2 && found;
		});
		// The one whose step returned learnt it from its fenced step end, the other from the renewal.
		for (const e of ends) expect(e.data.error).toBe('This console lost the task to another instance');
		await endDirectly(run.id);
	});

	it('two simultaneous exclusive run creations on overlapping nodes: one run, the other refused with 409', async () => {
		const [a, b] = [fleet.nodeIds[8]!, fleet.nodeIds[9]!];
		const results = await Promise.allSettled([
			createRun(systemActor, { kind: 'race-hold', title: 'exclusive A', nodeIds: [a, b], exclusive: true }),
			createRun(systemActor, { kind: 'race-hold', title: 'exclusive B', nodeIds: [b], exclusive: true })
		]);
		const created = results.filter((r) => r.status === 'fulfilled');
		const refused = results.filter((r) => r.status === 'rejected');
		const made = await db().select().from(runs).where(eq(runs.kind, 'race-hold'));
		try {
			expect(made).toHaveLength(1);
			expect(created).toHaveLength(1);
			expect(refused).toHaveLength(1);
			const err = (refused[0] as PromiseRejectedResult).reason as ServiceError;
			expect(err).toBeInstanceOf(ServiceError);
			expect(err).toMatchObject({ code: 'conflict', status: 409 });
		} finally {
			for (const r of made) {
				await cancelRun(systemActor, r.id);
				await waitForRun(r.id, ['cancelled']);
			}
		}
	});

	it('two simultaneous Code Sync triggers on overlapping nodes: one run, the other refused with 409', async () => {
		const picked = [10, 11].map((i) => fleet.hosts[i]!.name);
		await createRole(
			systemActor,
			createRoleSchema.parse({ name: 'race-role', path: '/opt/race-role', units: ['race.service'] })
		);
		await db()
			.update(nodes)
			.set({ roles: ['race-role'] })
			.where(inArray(nodes.name, picked));
		await notifyCommit(systemActor, { commit: 'a'.repeat(40), changed_roles: ['race-role'] });
		const trigger = (names: string[]) => triggerUpdate(systemActor, { scope: { nodes: names }, dry_run: false });
		let results: PromiseSettledResult<unknown>[];
		if (name === 'PGlite') {
			// One connection: the two calls' statements alternate, each call's check before either's run.
			results = await Promise.allSettled([trigger(picked), trigger([picked[1]!])]);
		} else {
			// Both calls reach the runs table (the overlap check, or the exclusive creation's lock) before either
			// goes on: whatever checks for overlaps is then done by both at once once the table is free.
			const lock = await holdTableLock((handle as DatabaseHandle & { url: string }).url, 'runs');
			let settled: Promise<PromiseSettledResult<unknown>[]> | undefined;
			try {
				settled = Promise.allSettled([trigger(picked), trigger([picked[1]!])]);
				await waitFor('both triggers waiting', async () => {
					const w = await lock.waiting();
					return (
						w.filter((s) => /from "runs" inner join "tasks"|pg_advisory_xact_lock\(hashtext/.test(s.query)).length === 2
					);
				});
			} finally {
				await lock.release();
			}
			results = await settled;
		}
		const made = await db().select().from(runs).where(eq(runs.kind, 'code-sync'));
		try {
			expect(made).toHaveLength(1);
			const refused = results.filter((r) => r.status === 'rejected');
			expect(refused).toHaveLength(1);
			expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({
				code: 'conflict',
				status: 409,
				message: expect.stringMatching(/is still updating some of these nodes/)
			});
		} finally {
			for (const r of made) {
				await cancelRun(systemActor, r.id);
				await waitForRun(r.id, ['cancelled']);
			}
		}
	});

	it('the stale-dispatch reset re-sends a task whose job is gone, never one whose job still waits', async () => {
		const node = fleet.nodeIds[12]!;
		// A holds the node's singleton slot in the queue, so the jobs of B and C wait behind it in state `created`.
		const a = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'holds the node',
			nodeIds: [node],
			params: { hang_at: 1 }
		});
		await waitFor('A running on the node', async () => (await getRun(a.id)).tasks[0]?.currentStep === 'step-1');
		const b = await createRun(systemActor, { kind: 'test-sequence', title: 'job waits', nodeIds: [node] });
		const c = await createRun(systemActor, { kind: 'test-sequence', title: 'job lost', nodeIds: [node] });
		const [taskB] = await db().select().from(tasks).where(eq(tasks.runId, b.id));
		const [taskC] = await db().select().from(tasks).where(eq(tasks.runId, c.id));
		const jobState = async (id: string) =>
			(await queryRows<{ state: string }>(sql`select state from pgboss.job where id = ${id}::uuid`))[0]?.state;
		expect(await jobState(taskB!.jobId!)).toBe('created');
		expect(await jobState(taskC!.jobId!)).toBe('created');
		// C's job is lost; both were dispatched ten minutes ago.
		await db().execute(sql`delete from pgboss.job where id = ${taskC!.jobId!}::uuid`);
		await db()
			.update(tasks)
			.set({ dispatchedAt: sql`now() - interval '10 minutes'` as unknown as Date })
			.where(inArray(tasks.id, [taskB!.id, taskC!.id]));
		const backdatedB = await taskRow(taskB!.id);
		// A sweep judges both in one statement: once C was sent again, B was looked at too.
		const resent = await waitFor('C sent again', async () => {
			await sweepRuns();
			const t = await taskRow(taskC!.id);
			return t.jobId !== null && t.jobId !== taskC!.jobId && t;
		});
		expect(await jobState(resent.jobId!)).toBe('created');
		const keptB = await taskRow(taskB!.id);
		expect(keptB.jobId).toBe(taskB!.jobId);
		expect(keptB.dispatchedAt).toEqual(backdatedB.dispatchedAt);
		expect(await jobState(keptB.jobId!)).toBe('created');
		const jobsOfB = await queryRows<{ n: number }>(
			sql`select count(*)::int as n from pgboss.job where data->>'taskId' = ${taskB!.id}`
		);
		expect(jobsOfB[0]!.n).toBe(1);

		// Once A is gone, B and C each run once.
		await cancelRun(systemActor, a.id);
		await waitForRun(a.id, ['cancelled']);
		for (const r of [b, c]) {
			const done = await waitForRun(r.id, ['succeeded', 'failed']);
			expect(done.state).toBe('succeeded');
			expect(done.tasks[0]!.attempt).toBe(1);
			expect(done.tasks[0]!.steps).toHaveLength(4);
		}
	});

	it('orphaned tasks recovered by the sweep stay within the console’s concurrency', async () => {
		await stopEngine();
		await startEngine({ ...ENGINE, concurrency: 2 });
		try {
			// Six tasks a dead console left running, their leases expired.
			const { run, tasks: orphans } = await insertRun('race-recover', [13, 14, 15, 16, 17, 18], {
				options: { concurrency: 6 },
				task: {
					state: 'running',
					leaseOwner: 'dead-console',
					leaseExpiresAt: sql`now() - interval '1 second'` as unknown as Date,
					attempt: 1,
					startedAt: new Date()
				}
			});
			const done = await waitForRun(run.id, ['succeeded', 'failed'], 60_000);
			expect(done.counts).toMatchObject({ total: 6, succeeded: 6 });
			for (const t of done.tasks) {
				expect(t.attempt).toBe(2);
				expect(summary(t.steps)).toEqual(['inspect:inspect:succeeded', 'do:work:succeeded']);
			}
			// Each recovery spans its steps' rows; at the start of each, count the recoveries under way. The
			// database's own timestamps are compared, by order only.
			const [peak] = await queryRows<{ peak: number }>(sql`
				with spans as (
					select task_id, min(started_at) as s, max(ended_at) as e from task_steps
					where task_id in (${sql.join(
						orphans.map((o) => sql`${o.id}::uuid`),
						sql`, `
					)})
					group by task_id
				)
				select max((select count(*) from spans b where b.s <= a.s and b.e > a.s))::int as peak from spans a`);
			expect(peak!.peak).toBeLessThanOrEqual(2);
		} finally {
			await stopEngine();
			await startEngine(ENGINE);
		}
	});

	// Two sessions at once: PGlite has one, so this race exists only on PostgreSQL (declared there alone).
	if (name === 'PostgreSQL')
		it('a resume is not paused again by a dispatch that waited for it (two sessions)', async () => {
			const failing = fleet.hosts[19]!.name;
			const run = await createRun(systemActor, {
				kind: 'test-sequence',
				title: 'paused on the first failure',
				nodeIds: [19, 20, 21].map((i) => fleet.nodeIds[i]!),
				params: { fail_at: 1, on: [failing] },
				options: { concurrency: 1, stopOnFirstFailure: true }
			});
			const paused = await waitForRun(run.id, ['paused']);
			// The failing step's own undo ran: the task is rolled back, which stops the run as a failure does.
			expect(paused.counts).toMatchObject({ rolled_back: 1, queued: 2 });

			const lock = await holdTableLock((handle as DatabaseHandle & { url: string }).url, 'tasks');
			// Sessions waiting for the lock, but for the engine's own sweep (which reads tasks on its timer).
			const waiting = async () =>
				(await lock.waiting()).filter((w) => !/lease_expires_at|pgboss/.test(w.query)).map((w) => w.pid);
			let resuming: Promise<unknown> | undefined;
			let dispatching: Promise<unknown> | undefined;
			try {
				resuming = resumeRun(systemActor, run.id);
				const first = await waitFor('the resume blocked', async () => {
					const w = await waiting();
					return w.length > 0 && w;
				});
				dispatching = dispatchRun(run.id);
				await waitFor('the dispatch blocked too', async () => (await waiting()).some((p) => !first.includes(p)));
			} finally {
				await lock.release();
			}
			await Promise.all([resuming, dispatching]);
			expect((await getRun(run.id)).state).not.toBe('paused');
			const done = await waitForRun(run.id, ['succeeded', 'failed']);
			expect(done.counts).toMatchObject({ total: 3, succeeded: 2, rolled_back: 1 });
			const states = await waitFor('the run’s end event', async () => {
				const rows = await db()
					.select({ data: events.data })
					.from(events)
					.where(and(eq(events.runId, run.id), eq(events.type, 'run.state')))
					.orderBy(asc(events.id));
				return rows.at(-1)?.data.ended && rows.map((r) => r.data.state);
			});
			expect(states).toEqual(['running', 'paused', 'running', 'failed']);
		});
});
