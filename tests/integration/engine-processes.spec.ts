/**
 * The engine across processes, on real OpenSSH test hosts and a real PostgreSQL: a console killed with
 * SIGKILL at random moments and restarted, and two consoles sharing one database. Each engine runs in a
 * child process (tests/support/engine-process.ts); the hosts' own logs are the witnesses.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { nodes, tasks } from '../../src/lib/server/db/schema';
import { registerFlow } from '../../src/lib/server/engine/flows';
import { createRun } from '../../src/lib/server/engine/runs';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { exclusiveFlow } from '../support/exclusive-flow';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';

registerFlow(exclusiveFlow);

const HOSTS = 30;
const LEASE_MS = 3_000;
const masterKey = randomBytes(32);

interface EngineProcess {
	child: ChildProcess;
	instance: string;
	/** Events this process's bus delivered (what its SSE clients would see). */
	seen: { id: number; type: string; task: string | null; data: Record<string, unknown> }[];
}

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let nodeIds: string[];
const children = new Set<ChildProcess>();

function startEngineProcess(): Promise<EngineProcess> {
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
				FLOTILLA_LOG_LEVEL: 'warn'
			},
			stdio: ['ignore', 'pipe', 'inherit']
		}
	);
	children.add(child);
	child.once('exit', () => children.delete(child));
	const seen: EngineProcess['seen'] = [];
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error('engine process did not start in 30 s')), 30_000);
		child.once('exit', (code) => reject(new Error(`engine process exited early (${code})`)));
		createInterface({ input: child.stdout! }).on('line', (line) => {
			const ready = /^ready (.+)$/.exec(line);
			if (ready) {
				clearTimeout(timer);
				resolve({ child, instance: ready[1]!, seen });
			} else if (line.startsWith('{')) {
				seen.push(JSON.parse(line));
			}
		});
	});
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

beforeAll(async () => {
	bed = await startTestbed({ hosts: HOSTS, firstHost: 200 });
	pg = await freshPostgres('flotilla_engine_proc');
	useDatabase(pg);
	useMasterKey(masterKey);
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id });
	nodeIds = rows.map((r) => r.id);
}, 120_000);

afterAll(async () => {
	for (const c of children) c.kill('SIGKILL');
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('the engine across processes', () => {
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
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 180_000);
		engine.child.kill('SIGTERM');
		const rows = await db().select().from(tasks).where(eq(tasks.runId, run.id));
		// True terminal states only, and each one agrees with the host's log.
		for (const t of rows) {
			expect(['succeeded', 'rolled_back', 'failed']).toContain(t.state);
			const i = bed.hosts.findIndex((h) => h.name === t.nodeName);
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
		const [a, b] = await Promise.all([startEngineProcess(), startEngineProcess()]);
		const run = await createRun(systemActor, {
			kind: 'test-exclusive',
			title: 'two consoles',
			nodeIds,
			options: { concurrency: 20 }
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
		a.child.kill('SIGTERM');
		b.child.kill('SIGTERM');
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
