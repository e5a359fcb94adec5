// The console under test, in a process of its own: the real engine on its own database, and the real SSE
// path served over HTTP. bench/engine.ts starts one per measurement so that its peak RSS is that run's.
// Usage: node --import ./tests/support/ts-hooks.mjs bench/engine/console.ts
// Env: DATABASE_URL (PostgreSQL) or PGLITE_DIR, FLEET_FILE, FLOW (kind), TASKS, CONCURRENCY, WARMUP_TASKS,
// COMMITS_FILE. Prints `ready <http port>`, runs on `go`, prints `result <json>`, exits on `exit`. With INIT_ONLY,
// only creates and migrates the database, prints `initialised` and exits.
import { randomBytes } from 'node:crypto';
import { writeFileSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { and, asc, count, eq, ne } from 'drizzle-orm';
import { systemActor } from '../../src/lib/server/audit/index.ts';
import { useMasterKey } from '../../src/lib/server/crypto/master-key.ts';
import { db, openDatabase, useDatabase } from '../../src/lib/server/db/index.ts';
import { events, nodes, tasks } from '../../src/lib/server/db/schema.ts';
import { drainEvents, eventBus, observeEventCommits } from '../../src/lib/server/engine/events.ts';
import { registerFlow } from '../../src/lib/server/engine/flows.ts';
import { registerFleet } from '../../src/lib/server/fleet/register.ts';
import { startEngine, stopEngine } from '../../src/lib/server/engine/index.ts';
import { createRun } from '../../src/lib/server/engine/runs.ts';
import { sseResponse } from '../../src/lib/server/http/sse.ts';
import { createCredential } from '../../src/lib/server/keys/credentials.ts';
import { localSleepFlow, sshSleepFlow } from './flows.ts';

const env = process.env;
if (process.execArgv.length) process.stderr.write(`console node flags: ${process.execArgv.join(' ')}\n`);
const flowKind = env.FLOW!;
const taskCount = Number(env.TASKS);
const concurrency = Number(env.CONCURRENCY);
const warmupTasks = Number(env.WARMUP_TASKS);
const now = () => performance.timeOrigin + performance.now();

const handle = await openDatabase({
	url: env.DATABASE_URL || undefined,
	pgliteDir: env.PGLITE_DIR,
	migrationsDir: path.resolve('drizzle')
});
useDatabase(handle);
if (env.INIT_ONLY) {
	// The database's first start (PGlite's initdb and the migrations) in a process of its own: see bench/engine.ts.
	await handle.close();
	process.stdout.write('initialised\n');
	process.exit(0);
}
useMasterKey(randomBytes(32));
// Only the flow under test: pg-boss starts a pool of workers per registered flow.
const flow = [sshSleepFlow, localSleepFlow].find((f) => f.kind === flowKind);
if (!flow) throw new Error(`no bench flow ${flowKind}`);
registerFlow(flow);
registerFleet();

// The fleet registered as an admin would after accepting its host keys; rows inserted directly, 500 at a time.
const fleet = JSON.parse(readFileSync(env.FLEET_FILE!, 'utf8')) as {
	clientKey: string;
	hosts: { name: string; address: string; port: number; fingerprint: string }[];
};
const cred = await createCredential(systemActor, { name: 'bench-key', privateKey: fleet.clientKey });
const nodeIds: string[] = [];
for (let i = 0; i < fleet.hosts.length; i += 500) {
	const rows = await db()
		.insert(nodes)
		.values(
			fleet.hosts.slice(i, i + 500).map((h) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				username: 'root',
				credentialId: cred.id,
				hostKeyFingerprint: h.fingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id });
	nodeIds.push(...rows.map((r) => r.id));
}

// As the console's startup does, with the engine concurrency the benchmark asks for and the default lease.
await startEngine({ concurrency, leaseMs: 30_000, sweepMs: 5_000 });

/** When this console's bus delivered each run's final `run.state` event. */
const endedAt = new Map<string, number>();
const endWaiters = new Map<string, () => void>();
eventBus.subscribe((e) => {
	if (e.type === 'run.state' && e.data.ended && e.run_id) {
		endedAt.set(e.run_id, now());
		endWaiters.get(e.run_id)?.();
	}
});

async function runOn(ids: string[], title: string) {
	const started = now();
	const run = await createRun(systemActor, {
		kind: flowKind,
		title,
		nodeIds: ids,
		options: { concurrency }
	});
	if (!endedAt.has(run.id)) await new Promise<void>((resolve) => endWaiters.set(run.id, resolve));
	return { run, wallMs: endedAt.get(run.id)! - started };
}

// The real SSE path (sseResponse → eventStream) behind a small node:http adapter that writes the body as
// adapter-node does: chunk by chunk, waiting for 'drain' when the socket's buffer is full.
let streams = 0;
const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
	const url = new URL(req.url ?? '/', 'http://127.0.0.1');
	if (url.pathname !== '/api/events') {
		res.writeHead(404).end();
		return;
	}
	const abort = new AbortController();
	res.on('close', () => abort.abort());
	const headers = new Headers();
	for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
	const request = new Request(url, { headers, signal: abort.signal });
	const response = sseResponse(request, url, { fromStart: false });
	res.writeHead(response.status, Object.fromEntries(response.headers));
	res.flushHeaders();
	streams++;
	const reader = response.body!.getReader();
	try {
		for (;;) {
			const { value, done } = await reader.read();
			if (done) break;
			if (!res.write(value)) await once(res, 'drain');
		}
	} catch {
		// The client went away.
	} finally {
		streams--;
		res.end();
	}
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');

// A warm-up run on a few nodes, so that the measured run does not pay for JIT compilation and first connections.
if (warmupTasks > 0) await runOn(nodeIds.slice(0, warmupTasks), 'warm-up');
await drainEvents();

process.stdout.write(`ready ${(server.address() as { port: number }).port}\n`);

// Exiting through process.exit lets --cpu-prof (BENCH_CONSOLE_ARGS) write its profile.
process.once('SIGTERM', () => process.exit(0));

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
	if (line === 'go') {
		const commits: number[] = [];
		observeEventCommits((ids) => {
			const t = now();
			for (const id of ids) commits.push(id, t);
		});
		// The console's RSS while it runs the measured run (VmHWM also covers start-up and node registration).
		let runPeakRss = process.memoryUsage.rss();
		const rssSampler = setInterval(() => (runPeakRss = Math.max(runPeakRss, process.memoryUsage.rss())), 100);
		const cpu = process.cpuUsage();
		const started = now();
		const { run, wallMs } = await runOn(nodeIds.slice(0, taskCount), 'benchmark');
		const cpuMs = (() => {
			const c = process.cpuUsage(cpu);
			return (c.user + c.system) / 1000;
		})();
		clearInterval(rssSampler);
		await drainEvents();
		observeEventCommits(undefined);
		const [{ n: eventCount } = { n: 0 }] = await db()
			.select({ n: count() })
			.from(events)
			.where(eq(events.runId, run.id));
		const rows = await db()
			.select({ state: tasks.state, error: tasks.error, startedAt: tasks.startedAt, endedAt: tasks.endedAt })
			.from(tasks)
			.where(eq(tasks.runId, run.id));
		const states: Record<string, number> = {};
		for (const r of rows) states[r.state] = (states[r.state] ?? 0) + 1;
		// The most tasks of the run running at one moment, from their recorded start and end.
		const edges = rows
			.filter((r) => r.startedAt && r.endedAt)
			.flatMap((r) => [
				[r.startedAt!.getTime(), 1],
				[r.endedAt!.getTime(), -1]
			])
			.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
		let running = 0;
		let peakRunning = 0;
		for (const [, d] of edges) peakRunning = Math.max(peakRunning, (running += d!));
		// A task that did not succeed is a finding in itself: its events go to stderr for whoever reads the log.
		const failed = await db()
			.select({ id: tasks.id })
			.from(tasks)
			.where(and(eq(tasks.runId, run.id), ne(tasks.state, 'succeeded')))
			.limit(3);
		for (const f of failed) {
			const trail = await db().select().from(events).where(eq(events.taskId, f.id)).orderBy(asc(events.id));
			process.stderr.write(
				`task ${f.id} (run started ${new Date(started).toISOString()}):\n${trail.map((e) => `  ${e.at.toISOString()} ${e.type} ${JSON.stringify(e.data)}`).join('\n')}\n`
			);
		}
		const status = readFileSync('/proc/self/status', 'utf8');
		const vmHwmKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
		writeFileSync(env.COMMITS_FILE!, JSON.stringify(commits));
		const result = {
			errors: [...new Set(rows.flatMap((r) => (r.error ? [r.error] : [])))].slice(0, 5),
			wallMs,
			cpuMs,
			eventCount,
			states,
			peakRunning,
			streams,
			lastEventId: commits.reduce((max, v, i) => (i % 2 === 0 && v > max ? v : max), 0),
			maxRssBytes: process.resourceUsage().maxRSS * 1024,
			runPeakRssBytes: runPeakRss,
			vmHwmBytes: vmHwmKb * 1024
		};
		process.stdout.write(`result ${JSON.stringify(result)}\n`);
	} else if (line === 'exit') {
		server.closeAllConnections();
		server.close();
		await stopEngine();
		await handle.close();
		process.exit(0);
	}
}
