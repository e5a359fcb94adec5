/**
 * The engine across processes, on real OpenSSH test hosts and a real PostgreSQL: a console killed with
 * SIGKILL at random moments and restarted, two consoles sharing one database, and a cancel given to one
 * console reaching the commands the other runs. Each engine runs in a child process
 * (tests/support/engine-process.ts); the hosts' own logs and process tables are the witnesses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { eq, inArray, sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, queryRows, useDatabase } from '../../src/lib/server/db';
import { events, nodes, taskSteps, tasks } from '../../src/lib/server/db/schema';
import { registerFlow } from '../../src/lib/server/engine/flows';
import { createRun } from '../../src/lib/server/engine/runs';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { exclusiveFlow } from '../support/exclusive-flow';
import { sequenceFlow } from '../support/flows';
import { startTestbed, type TestHost, type Testbed } from '../testbed/testbed.ts';

registerFlow(exclusiveFlow);
registerFlow(sequenceFlow);

const HOSTS = 30;
const LEASE_MS = 3_000;
const masterKey = randomBytes(32);

interface EngineProcess {
	child: ChildProcess;
	instance: string;
	/** Events this process's bus delivered (what its SSE clients would see). */
	seen: { id: number; type: string; task: string | null; data: Record<string, unknown> }[];
	/** Answers to commands sent on its stdin (`cancelled <run id>`, `error <message>`). */
	answers: string[];
}

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let nodeIds: string[];
const children = new Set<ChildProcess>();

function startEngineProcess(opts: { concurrency?: number } = {}): Promise<EngineProcess> {
	const child = spawn(
		process.execPath,
		[
			'--no-warnings',
			'--experimental-transform-types',
			'--import',
			'./tests/support/ts-hooks.mjs',
			'tests/support/engine-process.ts'
		],
		{
			env: {
				...process.env,
				DATABASE_URL: pg.url,
				FLOTILLA_TEST_MASTER_KEY: masterKey.toString('hex'),
				LEASE_MS: String(LEASE_MS),
				ENGINE_CONCURRENCY: String(opts.concurrency ?? 50),
				FLOTILLA_LOG_LEVEL: 'warn'
			},
			stdio: ['pipe', 'pipe', 'inherit']
		}
	);
	children.add(child);
	child.once('exit', () => children.delete(child));
	const seen: EngineProcess['seen'] = [];
	const answers: string[] = [];
	// One that does not start is still in `children`: the test's afterEach stops it.
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error('engine process did not start in 60 s')), 60_000);
		child.once('exit', (code) => reject(new Error(`engine process exited early (${code})`)));
		createInterface({ input: child.stdout! }).on('line', (line) => {
			const ready = /^ready (.+)$/.exec(line);
			if (ready) {
				clearTimeout(timer);
				resolve({ child, instance: ready[1]!, seen, answers });
			} else if (line.startsWith('{')) {
				seen.push(JSON.parse(line));
			} else {
				answers.push(line);
			}
		});
	});
}

/**
 * Every engine process this file started has exited, so that none of them takes the next test's tasks: each is
 * stopped as a console is (SIGTERM, a draining shutdown), and killed if it has not exited 45 s later (its 30 s
 * grace for running steps, and some).
 */
async function allEnginesStopped(): Promise<void> {
	for (const c of children) c.kill('SIGTERM');
	await waitFor('the engine processes to exit', async () => children.size === 0, 45_000).catch(async (err) => {
		for (const c of children) c.kill('SIGKILL');
		await waitFor('the engine processes to exit after SIGKILL', async () => children.size === 0, 10_000);
		throw err;
	});
}

/** The run's unfinished tasks, each with its dispatch and its job's state in pg-boss: what a stuck run is waiting for. */
async function unfinishedTasks(runId: string): Promise<string> {
	const rows = await queryRows<{ node: string; state: string; dispatched: string | null; job: string | null }>(sql`
		select t.node_name as node, t.state, t.dispatched_at::text as dispatched, j.state::text as job
		from tasks t left join pgboss.job j on j.id = t.job_id::uuid
		where t.run_id = ${runId} and t.ended_at is null order by t.node_name`);
	return rows.map((r) => `${r.node}:${r.state}:dispatched ${r.dispatched ?? 'no'}:job ${r.job ?? 'none'}`).join(' ');
}

async function hostLog(i: number): Promise<string[]> {
	const text = await readFile(join(bed.hosts[i]!.root, 'var/lib/flotilla-testbed/engine.log'), 'utf8').catch(() => '');
	return text.split('\n').filter(Boolean);
}

/** Every host's log must alternate begin/end of the same task: no node ever ran two tasks at once. */
async function expectNoOverlap(): Promise<number> {
	let begins = 0;
	for (let i = 0; i < HOSTS; i++) {
		let open: string | null = null;
		for (const line of await hostLog(i)) {
			const [, what, task] = line.split(' ');
			expect(what, `${bed.hosts[i]!.name}: ${line}`).not.toBe('collision');
			if (what === 'begin') {
				expect(open, `${bed.hosts[i]!.name}: ${task} began while ${open} was running`).toBeNull();
				open = task!;
				begins++;
			} else {
				expect(task, `${bed.hosts[i]!.name}: end of ${task} while ${open} was running`).toBe(open);
				open = null;
			}
		}
		expect(open, `${bed.hosts[i]!.name}: ${open} never ended`).toBeNull();
	}
	return begins;
}

/** Registers the testbed's hosts as nodes `<label>-hostNN` with pinned host keys; returns their ids in host order. */
async function registerHosts(testbed: Testbed, label: string): Promise<string[]> {
	const cred = await createCredential(systemActor, { name: label, privateKey: testbed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			testbed.hosts.map((h) => ({
				name: `${label}-${h.name}`,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id });
	return rows.map((r) => r.id);
}

beforeAll(async () => {
	pg = await freshPostgres('flotilla_engine_proc');
	useDatabase(pg);
	useMasterKey(masterKey);
}, 60_000);

// Also when a test fails: an engine it left running would take the next test's tasks.
afterEach(allEnginesStopped, 60_000);

afterAll(async () => {
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
});

describe('the engine across processes', () => {
	// Each describe starts its own hosts, so that running one of them (`-t`) uses only its address range.
	beforeAll(async () => {
		bed = await startTestbed({ hosts: HOSTS, firstHost: 200 });
		nodeIds = await registerHosts(bed, 'fleet');
	}, 120_000);
	afterAll(async () => {
		await bed?.stop();
	});

	it('survives SIGKILL at random moments: every task ends truly, and no node ever ran two tasks at once', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-exclusive',
			title: 'killed and restarted',
			nodeIds,
			options: { concurrency: 10 }
		});
		let engine = await startEngineProcess();
		const kills: number[] = [];
		for (let k = 0; k < 10; k++) {
			const wait = 300 + Math.floor(Math.random() * 1_500);
			await new Promise((r) => setTimeout(r, wait));
			engine.child.kill('SIGKILL');
			kills.push(wait);
			engine = await startEngineProcess();
		}
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 180_000).catch(async (err: Error) => {
			throw new Error(`${err.message}; unfinished: ${await unfinishedTasks(run.id)}`);
		});
		const rows = await db().select().from(tasks).where(eq(tasks.runId, run.id));
		// True terminal states only, and each one agrees with the host's log.
		for (const t of rows) {
			expect(['succeeded', 'rolled_back', 'failed']).toContain(t.state);
			const i = bed.hosts.findIndex((h) => `fleet-${h.name}` === t.nodeName);
			const lines = (await hostLog(i)).filter((l) => l.includes(t.id));
			if (t.state === 'succeeded') expect(lines.at(-1)).toMatch(new RegExp(`end ${t.id}$`));
			if (t.state === 'rolled_back') expect(lines.at(-1)).toMatch(/rollback$/);
		}
		expect(rows.filter((t) => t.attempt > 1).length, 'some tasks were recovered after a kill').toBeGreaterThan(0);
		const began = rows.filter((t) => t.state === 'succeeded' || t.state === 'rolled_back').length;
		expect(await expectNoOverlap()).toBeGreaterThanOrEqual(began);
		expect(done.counts.total).toBe(HOSTS);
	}, 300_000);

	it('two consoles on one PostgreSQL share the work, never run a node twice, and see each other’s events', async () => {
		// Each console can run 8 tasks at once and the run wants 16: work reaches both whichever fetches first.
		// (With room for the whole run, whichever console fetched first could rightly take every job.)
		const [a, b] = await Promise.all([startEngineProcess({ concurrency: 8 }), startEngineProcess({ concurrency: 8 })]);
		const run = await createRun(systemActor, {
			kind: 'test-exclusive',
			title: 'two consoles',
			nodeIds,
			options: { concurrency: 16 }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 120_000);
		expect(done.state).toBe('succeeded');
		await new Promise((r) => setTimeout(r, 1_500));
		const started = (p: EngineProcess) =>
			p.seen.filter((e) => e.type === 'task.state' && e.data.state === 'running' && run.id && e.task);
		const taskIds = new Set(done.tasks.map((t) => t.id));
		const byA = started(a).filter((e) => e.data.instance === a.instance && taskIds.has(e.task!));
		const byB = started(b).filter((e) => e.data.instance === b.instance && taskIds.has(e.task!));
		expect(byA.length, 'console A executed tasks').toBeGreaterThan(0);
		expect(byB.length, 'console B executed tasks').toBeGreaterThan(0);
		expect(byA.length + byB.length).toBe(HOSTS);
		// Each console's bus delivered the other's task starts too (LISTEN/NOTIFY across instances).
		expect(started(a).filter((e) => e.data.instance === b.instance && taskIds.has(e.task!))).toHaveLength(byB.length);
		expect(started(b).filter((e) => e.data.instance === a.instance && taskIds.has(e.task!))).toHaveLength(byA.length);
		await expectNoOverlap();
		expect(
			(
				await db()
					.select()
					.from(tasks)
					.where(inArray(tasks.runId, [run.id]))
			).every((t) => t.attempt === 1)
		).toBe(true);
	}, 180_000);
});

describe('a cancel given to one console', () => {
	const CANCEL_HOSTS = 10;
	let cancelBed: Testbed;
	let cancelNodeIds: string[];

	beforeAll(async () => {
		cancelBed = await startTestbed({ hosts: CANCEL_HOSTS, firstHost: 230 });
		cancelNodeIds = await registerHosts(cancelBed, 'cancel');
	}, 120_000);
	afterAll(async () => {
		await cancelBed?.stop();
	});

	/**
	 * The `sleep 600` processes running on a test host, found from outside: a process belongs to the host
	 * when its mount namespace holds the host's bind mounts (each host's folder is named by the testbed's
	 * temporary folder and the host's name). Zombies are gone already, only not yet reaped.
	 */
	async function sleepsOn(host: TestHost): Promise<number[]> {
		const marker = `${basename(cancelBed.dir)}/hosts/${host.name}/`;
		const found: number[] = [];
		for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
			const read = (f: string) => readFile(`/proc/${pid}/${f}`, 'utf8').catch(() => '');
			const [cmdline, stat, mounts] = [await read('cmdline'), await read('stat'), await read('mountinfo')];
			if (cmdline.split('\0').join(' ') !== 'sleep 600 ' || / Z /.test(stat.slice(stat.lastIndexOf(')')))) continue;
			if (mounts.includes(marker)) found.push(Number(pid));
		}
		return found;
	}

	it('kills the remote commands another console runs, rolls them back, and ends every task at once', async () => {
		// Five tasks at most on each console, ten nodes: each console runs exactly five of them.
		const [a, b] = await Promise.all([startEngineProcess({ concurrency: 5 }), startEngineProcess({ concurrency: 5 })]);
		const STEP_DEADLINE_MS = 120_000;
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'cancelled across consoles',
			nodeIds: cancelNodeIds,
			// Step 2 sleeps 600 s on every node, under a 120 s deadline: only the cancel can end it early.
			params: { hang_at: 2, step_deadline_ms: STEP_DEADLINE_MS },
			options: { concurrency: CANCEL_HOSTS }
		});
		// What the wait last saw (each task's state, step and owner; each host's sleeps), to explain a timeout.
		let seen = '';
		await waitFor(
			'every task sleeping in step 2, with its sleep running on its host',
			async () => {
				const rows = await db().select().from(tasks).where(eq(tasks.runId, run.id)).orderBy(tasks.nodeName);
				const sleeps = await Promise.all(cancelBed.hosts.map(sleepsOn));
				seen = `${rows.map((t) => `${t.nodeName}:${t.state}:${t.currentStep}:${t.leaseOwner}`).join(' ')}; sleeps per host ${sleeps.map((p) => p.length).join(',')}`;
				return rows.every((t) => t.currentStep === 'step-2') && sleeps.every((p) => p.length === 1);
			},
			30_000
		).catch((err: Error) => {
			throw new Error(`${err.message}; last seen: ${seen}`);
		});
		const owners = await db()
			.select({ id: tasks.id, owner: tasks.leaseOwner, node: tasks.nodeName })
			.from(tasks)
			.where(eq(tasks.runId, run.id));
		const ofB = owners.filter((t) => t.owner === b.instance);
		expect(ofB, 'console B executes five of the tasks').toHaveLength(5);
		expect(owners.filter((t) => t.owner === a.instance)).toHaveLength(5);

		a.child.stdin!.write(`cancel ${run.id}\n`);
		const done = await waitForRun(run.id, ['cancelled'], 20_000);
		expect(a.answers).toEqual([`cancelled ${run.id}`]);
		expect(done.counts).toMatchObject({ total: CANCEL_HOSTS, cancelled: CANCEL_HOSTS });

		// B heard of the cancel from A through the database, not from a call of its own.
		expect(b.seen.some((e) => e.type === 'run.state' && e.data.state === 'cancelled')).toBe(true);

		// Nothing is left running on any host: each sleep was killed, not abandoned with its channel.
		await waitFor(
			'no sleep left on any host',
			async () => {
				for (const host of cancelBed.hosts) if ((await sleepsOn(host)).length) return false;
				return true;
			},
			3_000
		);

		const output = await db()
			.select({ taskId: events.taskId, data: events.data })
			.from(events)
			.where(eq(events.type, 'task.output'));
		for (const t of done.tasks) {
			expect(t.state, t.nodeName).toBe('cancelled');
			// The step that was running is marked cancelled (not failed at its deadline), then undone itself,
			// then the step before it, on the node.
			const steps = await db().select().from(taskSteps).where(eq(taskSteps.taskId, t.id)).orderBy(taskSteps.id);
			expect(
				steps.map((s) => `${s.phase}:${s.name}:${s.state}`),
				t.nodeName
			).toEqual(['do:step-1:succeeded', 'do:step-2:cancelled', 'undo:step-2:succeeded', 'undo:step-1:succeeded']);
			// `undo-1` is what the undo's `echo` printed on the host, streamed back as the task's output.
			const lines = output
				.filter((o) => o.taskId === t.id)
				.flatMap((o) => (o.data as { lines: { s: string; t: string }[] }).lines);
			expect(lines, t.nodeName).toContainEqual({ s: 'out', t: 'undo-1' });
		}
		for (const t of ofB) expect(done.tasks.find((d) => d.id === t.id)?.state).toBe('cancelled');
	}, 120_000);
});
