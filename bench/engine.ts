/**
 * The update engine at fleet scale: 2,000 simulated nodes, a 5-step flow of 50 ms steps, run concurrency 200,
 * on PGlite and on PostgreSQL. Measures wall time against the ideal, the console's peak RSS, events persisted
 * per second and SSE delivery latency to 100 clients. Run it with `npm run bench:engine`; bench/README.md says
 * what each figure means and how the processes are laid out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import postgres from 'postgres';
import { serveNodeFlags } from '../scripts/serve-flags.mjs';
import {
	cpuMsOf,
	cpuUsedFrom,
	cpusLine,
	fixed,
	markdownTable,
	median,
	packageVersion,
	postgresCpuMs,
	startPostgres,
	stopPostgres,
	toolVersion,
	publishSection,
	type Row as SampledRow
} from './common.ts';
import { stepCount, stepMs } from './engine/flows.ts';

const command = 'npm run bench:engine';
const sectionHeading = '## Update engine';
const root = new URL('..', import.meta.url).pathname;

const env = process.env;
const fleetSize = Number(env.BENCH_NODES ?? 2_000);
const concurrency = Number(env.BENCH_CONCURRENCY ?? 200);
const clientCount = Number(env.BENCH_CLIENTS ?? 100);
const rounds = Number(env.BENCH_ROUNDS ?? 3);
const warmupTasks = Math.min(concurrency, fleetSize);
/** Only the rows whose "database flow clients" matches this (for profiling one case), e.g. `PostgreSQL bench-local-sleep 0`. */
const only = env.BENCH_ONLY ? new RegExp(env.BENCH_ONLY) : undefined;
/** The console's node flags: `npm run serve`'s, then any extra, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`. */
const consoleArgs = [...serveNodeFlags(), ...(env.BENCH_CONSOLE_ARGS?.split(' ').filter(Boolean) ?? [])];
/** A loopback address no other test or benchmark uses (see the address table in the testbed's notes). */
const fleetAddress = '127.0.1.79';
const idealMs = Math.ceil(fleetSize / concurrency) * stepCount * stepMs;
/** Issue 22's aims: within 1.2× the SSH layer's own floor measured in the same run, 400 MB, 100 ms. */
const aims = { overFloor: 1.2, rssMb: 400, p99Ms: 100 };

const flows = [
	{ kind: 'bench-ssh-sleep', label: '`sleep 0.05` on the node via ctx.exec' },
	{ kind: 'bench-local-sleep', label: 'diagnostic: 50 ms wait in the console' }
] as const;
const backends = ['PGlite', 'PostgreSQL'] as const;

interface Measurement {
	backend: (typeof backends)[number];
	flow: (typeof flows)[number];
	clients: number;
	wallMs: number;
	eventCount: number;
	rssMb: number;
	/** The highest RSS sampled (every 100 ms) while the measured run ran. */
	runRssMb: number;
	consoleCpuMs: number;
	fleetCpuMs: number;
	clientsCpuMs: number | null;
	postgresCpuMs: number | null;
	peakRunning: number;
	/** PostgreSQL only: transactions (statements outside a block included) on the run's database during the run. */
	transactions: number | null;
	latency: { p50: number; p99: number; max: number; samples: number; complete: number; ordered: number } | null;
}

/** A child running one of bench/engine/*.ts, with its stdout read line by line. */
class Child {
	readonly proc: ChildProcess;
	private waiting: { prefix: string; resolve: (rest: string) => void }[] = [];
	private exited: Promise<number | null>;

	constructor(file: string, childEnv: Record<string, string>, log: (line: string) => void, nodeArgs: string[] = []) {
		this.proc = spawn(
			process.execPath,
			[
				...nodeArgs,
				'--no-warnings',
				'--experimental-transform-types',
				'--import',
				'./tests/support/ts-hooks.mjs',
				file
			],
			{
				cwd: root,
				env: { ...process.env, FLOTILLA_LOG_LEVEL: 'warn', ...childEnv },
				stdio: ['pipe', 'pipe', 'inherit']
			}
		);
		this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
		createInterface({ input: this.proc.stdout! }).on('line', (line) => {
			const i = this.waiting.findIndex((w) => line.startsWith(w.prefix));
			if (i >= 0) {
				const [w] = this.waiting.splice(i, 1);
				w!.resolve(line.slice(w!.prefix.length));
			} else log(`  [${file}] ${line}`);
		});
	}

	/** The rest of the first line that starts with `prefix`; fails if the process exits first. */
	expect(prefix: string, timeoutMs = 10 * 60_000): Promise<string> {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`no "${prefix}" within ${timeoutMs} ms`)), timeoutMs);
			this.waiting.push({
				prefix,
				resolve: (rest) => {
					clearTimeout(timer);
					resolve(rest);
				}
			});
			void this.exited.then((code) => {
				clearTimeout(timer);
				reject(new Error(`child exited with ${code} before "${prefix}"`));
			});
		});
	}

	send(line: string): void {
		this.proc.stdin!.write(`${line}\n`);
	}

	/** Waits up to `graceMs` for the child to exit by itself (after `exit`), then sends SIGTERM. */
	async stop(graceMs = 0): Promise<void> {
		if (graceMs) await Promise.race([this.exited, new Promise((r) => setTimeout(r, graceMs))]);
		if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM');
		await this.exited;
	}
}

async function measureOnce(
	o: Pick<Measurement, 'backend' | 'flow' | 'clients'> & {
		dir: string;
		fleet: Child;
		fleetFile: string;
		pg: { url: string; postmasterPid: number } | undefined;
	},
	log: (line: string) => void
): Promise<Measurement> {
	const tag = `${o.backend}-${o.flow.kind}-${o.clients}-${Date.now().toString(36)}`;
	const commitsFile = join(o.dir, `${tag}.commits.json`);
	const childEnv: Record<string, string> = {
		FLEET_FILE: o.fleetFile,
		FLOW: o.flow.kind,
		TASKS: String(fleetSize),
		CONCURRENCY: String(concurrency),
		WARMUP_TASKS: String(warmupTasks),
		COMMITS_FILE: commitsFile
	};
	let dropDatabase: (() => Promise<void>) | undefined;
	let transactions: (() => Promise<number>) | undefined;
	if (o.pg) {
		const name = `flotilla_bench_${tag.replace(/[^a-z0-9]/gi, '_').toLowerCase()}`;
		const admin = postgres(o.pg.url, { max: 1, onnotice: () => {} });
		await admin.unsafe(`create database "${name}"`);
		const u = new URL(o.pg.url);
		u.pathname = `/${name}`;
		childEnv.DATABASE_URL = u.toString();
		// Every statement outside a transaction block counts as one: this is the console's and pg-boss's round trips.
		transactions = async () =>
			Number(
				(await admin`select xact_commit + xact_rollback as n from pg_stat_database where datname = ${name}`)[0]!.n
			);
		dropDatabase = async () => {
			await admin.unsafe(`drop database if exists "${name}" with (force)`);
			await admin.end();
		};
	} else {
		childEnv.PGLITE_DIR = join(o.dir, tag, 'pglite');
		// A console starts on a database that exists: PGlite's initdb, done once in a data folder's life, briefly
		// takes about 1.2 GB and would otherwise be the console's peak RSS. It runs in a process of its own first.
		const init = new Child('bench/engine/console.ts', { ...childEnv, INIT_ONLY: '1' }, log);
		await init.expect('initialised');
		await init.stop(10_000);
	}
	const consoleProc = new Child('bench/engine/console.ts', childEnv, log, consoleArgs);
	let clients: Child | undefined;
	try {
		const port = await consoleProc.expect('ready ');
		if (o.clients) {
			clients = new Child(
				'bench/engine/clients.ts',
				{ URL: `http://127.0.0.1:${port}/api/events`, CLIENTS: String(o.clients) },
				log
			);
			await clients.expect('connected');
		}
		// CPU used by the fleet, the clients and PostgreSQL, read before and after the run.
		const clientsPid = clients?.proc.pid;
		const pg = o.pg;
		const cpuUsed = await cpuUsedFrom({
			fleet: () => cpuMsOf(o.fleet.proc.pid!),
			clients: async () => (clientsPid ? await cpuMsOf(clientsPid) : 0),
			pg: async () => (pg ? await postgresCpuMs(pg.postmasterPid) : 0)
		});
		// Backends publish their statistics at most once a second.
		await new Promise((r) => setTimeout(r, transactions ? 1_100 : 0));
		const tx0 = (await transactions?.()) ?? 0;
		consoleProc.send('go');
		const result = JSON.parse(await consoleProc.expect('result ')) as {
			wallMs: number;
			cpuMs: number;
			eventCount: number;
			states: Record<string, number>;
			errors: string[];
			peakRunning: number;
			streams: number;
			lastEventId: number;
			maxRssBytes: number;
			runPeakRssBytes: number;
			vmHwmBytes: number;
		};
		const cpu = await cpuUsed();
		await new Promise((r) => setTimeout(r, transactions ? 1_100 : 0));
		const tx1 = (await transactions?.()) ?? 0;
		if (result.states.succeeded !== fleetSize) {
			throw new Error(
				`the run did not succeed on every node: ${JSON.stringify(result.states)} after ${fixed(result.wallMs / 1000)} s ` +
					`(peak RSS ${fixed(Math.max(result.maxRssBytes, result.vmHwmBytes) / 2 ** 20, 0)} MB, console CPU ` +
					`${fixed(result.cpuMs / 1000, 1)} s), ${JSON.stringify(result.errors)}`
			);
		}
		if (result.peakRunning > concurrency) {
			throw new Error(`${result.peakRunning} tasks ran at once, more than the run concurrency ${concurrency}`);
		}
		let latency: Measurement['latency'] = null;
		if (clients) {
			clients.send(`finish ${commitsFile} ${result.lastEventId}`);
			latency = JSON.parse(await clients.expect('latency ')) as NonNullable<Measurement['latency']>;
			if (latency.complete !== o.clients || latency.ordered !== o.clients) {
				throw new Error(`SSE clients missed events or saw them out of order: ${JSON.stringify(latency)}`);
			}
		}
		consoleProc.send('exit');
		return {
			backend: o.backend,
			flow: o.flow,
			clients: o.clients,
			wallMs: result.wallMs,
			eventCount: result.eventCount,
			rssMb: Math.max(result.maxRssBytes, result.vmHwmBytes) / 2 ** 20,
			runRssMb: result.runPeakRssBytes / 2 ** 20,
			consoleCpuMs: result.cpuMs,
			fleetCpuMs: cpu.fleet,
			clientsCpuMs: clients ? cpu.clients : null,
			postgresCpuMs: o.pg ? cpu.pg : null,
			peakRunning: result.peakRunning,
			transactions: transactions ? tx1 - tx0 : null,
			latency
		};
	} finally {
		await clients?.stop();
		// A console told to exit writes its CPU profile (BENCH_CONSOLE_ARGS) on the way out.
		await consoleProc.stop(15_000);
		await dropDatabase?.();
		await rm(commitsFile, { force: true });
		await rm(join(o.dir, tag), { recursive: true, force: true });
	}
}

interface Row extends SampledRow<Measurement> {
	backend: string;
	flow: (typeof flows)[number];
	clients: number;
}

function table(rows: Row[]): string {
	const right = true;
	const columns = [
		{ heading: 'database' },
		{ heading: 'steps' },
		{ heading: 'SSE clients', right },
		{ heading: 'wall (s), median', right },
		{ heading: 'runs (s)' },
		{ heading: 'ratio to ideal', right },
		{ heading: 'peak RSS (MB)', right },
		{ heading: 'RSS during run (MB)', right },
		{ heading: 'events', right },
		{ heading: 'events/s', right },
		{ heading: 'SSE p50 (ms)', right },
		{ heading: 'SSE p99 (ms)', right },
		{ heading: 'CPU s: console / fleet / PostgreSQL / clients' },
		{ heading: 'PostgreSQL transactions per task', right }
	];
	const lines = rows.map((r) => {
		const wall = median(r.samples.map((s) => s.wallMs)) / 1000;
		const events = median(r.samples.map((s) => s.eventCount));
		const perSecond = median(r.samples.map((s) => s.eventCount / (s.wallMs / 1000)));
		const rss = Math.max(...r.samples.map((s) => s.rssMb));
		const lat = r.samples.map((s) => s.latency).filter((l) => l !== null);
		const cpu = (pick: (s: Measurement) => number | null) => {
			const v = r.samples.map(pick);
			return v.some((x) => x === null) ? '–' : fixed(median(v as number[]) / 1000, 1);
		};
		return [
			r.backend,
			r.flow.label,
			String(r.clients),
			fixed(wall),
			r.samples.map((s) => fixed(s.wallMs / 1000)).join(', '),
			fixed((wall * 1000) / idealMs),
			fixed(rss, 0),
			fixed(Math.max(...r.samples.map((s) => s.runRssMb)), 0),
			String(events),
			fixed(perSecond, 0),
			lat.length ? fixed(median(lat.map((l) => l.p50)), 1) : '–',
			lat.length ? fixed(median(lat.map((l) => l.p99)), 1) : '–',
			`${cpu((s) => s.consoleCpuMs)} / ${cpu((s) => s.fleetCpuMs)} / ${cpu((s) => s.postgresCpuMs)} / ${cpu((s) => s.clientsCpuMs)}`,
			r.samples.every((s) => s.transactions !== null)
				? fixed(median(r.samples.map((s) => s.transactions! / fleetSize)), 1)
				: '–'
		];
	});
	return markdownTable(columns, lines);
}

interface Floor {
	wallMs: number;
	cpuMs: number;
	fleetCpuMs: number;
}

/**
 * The same connections and `sleep` execs through the SSH layer alone (bench/engine/floor.ts): no engine, no
 * database, no events. It is what this machine can do at all, so the engine's own cost is what it adds.
 */
async function measureFloor(fleet: Child, fleetFile: string, log: (line: string) => void): Promise<Floor> {
	const child = new Child(
		'bench/engine/floor.ts',
		{ FLEET_FILE: fleetFile, TASKS: String(fleetSize), CONCURRENCY: String(concurrency) },
		log
	);
	await child.expect('ready');
	const cpuUsed = await cpuUsedFrom({ fleet: () => cpuMsOf(fleet.proc.pid!) });
	child.send('go');
	const result = JSON.parse(await child.expect('result ')) as { wallMs: number; cpuMs: number };
	const { fleet: fleetCpuMs } = await cpuUsed();
	await child.stop(5_000);
	return { ...result, fleetCpuMs };
}

function floorSummary(floor: Floor[]): string[] {
	if (!floor.length) return [];
	const wall = median(floor.map((f) => f.wallMs));
	return [
		`The SSH layer alone (bench/engine/floor.ts: the same ${fleetSize} connections and ${fleetSize * stepCount} \`sleep\` execs at concurrency ${concurrency} through \`connect\` and \`exec\`, with no engine, database or events, warmed up the same way): ` +
			`wall ${fixed(wall / 1000)} s median (${floor.map((f) => fixed(f.wallMs / 1000)).join(', ')}), ratio ${fixed(wall / idealMs)} to the ideal; ` +
			`CPU s: client ${fixed(median(floor.map((f) => f.cpuMs)) / 1000, 1)} / fleet ${fixed(median(floor.map((f) => f.fleetCpuMs)) / 1000, 1)}. ` +
			`No engine on this machine can be faster than this floor; "× floor" below is the engine's wall time divided by it.`
	];
}

function verdicts(rows: Row[], floor: Floor[]): string[] {
	const floorMs = floor.length ? median(floor.map((f) => f.wallMs)) : null;
	return rows
		.filter((r) => r.flow.kind === 'bench-ssh-sleep')
		.map((r) => {
			const ratio = median(r.samples.map((s) => s.wallMs)) / idealMs;
			const rss = Math.max(...r.samples.map((s) => s.rssMb));
			const lat = r.samples.map((s) => s.latency).filter((l) => l !== null);
			const p99 = lat.length ? median(lat.map((l) => l.p99)) : null;
			const mark = (ok: boolean) => (ok ? 'met' : '**missed**');
			const wall = median(r.samples.map((s) => s.wallMs));
			const parts = [
				floorMs
					? `${fixed(wall / floorMs)} × the SSH floor (aim ≤ ${aims.overFloor}: ${mark(wall / floorMs <= aims.overFloor)}; ratio to ideal ${fixed(ratio)})`
					: `ratio to ideal ${fixed(ratio)} (the floor was not measured: its runs failed)`,
				`peak RSS ${fixed(rss, 0)} MB (aim ≤ ${aims.rssMb}: ${mark(rss <= aims.rssMb)}; ${fixed(Math.max(...r.samples.map((s) => s.runRssMb)), 0)} MB during the run)`
			];
			if (p99 !== null) parts.push(`SSE p99 ${fixed(p99, 1)} ms (aim ≤ ${aims.p99Ms}: ${mark(p99 <= aims.p99Ms)})`);
			return `- ${r.backend}, ${r.clients ? `${r.clients} SSE clients` : 'no SSE clients'}: ${parts.join('; ')}.`;
		});
}

async function machine(pgUrl: string | undefined): Promise<string[]> {
	const pkg = packageVersion;
	let pgVersion = 'not started';
	if (pgUrl) {
		const sql = postgres(pgUrl, { max: 1, onnotice: () => {} });
		try {
			pgVersion = ((await sql`select version()`)[0]!.version as string).split(',')[0]!;
		} catch (err) {
			// The table is worth writing even when the server went away (see the failures under it).
			pgVersion = `PostgreSQL (version unknown: ${(err as Error).message})`;
		} finally {
			await sql.end();
		}
	}
	return [
		cpusLine(),
		`- Node ${process.version}, pg-boss ${await pkg('pg-boss')}, PGlite ${await pkg('@electric-sql/pglite')}, ssh2 ${await pkg('ssh2')}, ${await toolVersion('uname', ['-sr'])}`,
		`- ${pgVersion} (throwaway server from scripts/throwaway-postgres.sh: fsync and synchronous_commit off); PGlite on files in a temporary folder, as the console keeps it`
	];
}

export async function benchmarkEngine(log: (line: string) => void = console.log): Promise<string> {
	const started = new Date();
	const loadBefore = loadavg();
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-engine-'));
	// A folder of its own under /tmp: the script hands it to the postgres user, who could not enter `dir` (0700).
	const pgDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-pg-'));
	let fleet: Child | undefined;
	let pgStarted = false;
	try {
		log(`starting ${fleetSize} simulated nodes on ${fleetAddress} in their own process`);
		const fleetFile = join(dir, 'fleet.json');
		fleet = new Child(
			'bench/engine/fleet.ts',
			{ FLEET_SIZE: String(fleetSize), FLEET_ADDRESS: fleetAddress, FLEET_FILE: fleetFile },
			log
		);
		await fleet.expect('ready');

		log('starting a throwaway PostgreSQL');
		const { url: pgUrl, postmasterPid } = await startPostgres(pgDir);
		pgStarted = true;

		const plan: Row[] = backends.flatMap((backend) =>
			flows.flatMap((flow) => [0, clientCount].map((clients) => ({ backend, flow, clients, samples: [] })))
		);
		const failures: string[] = [];
		const floor: Floor[] = [];
		// Round-robin, as bench:ssh does: drift on the shared machine spreads over every row.
		for (let round = 1; round <= rounds; round++) {
			try {
				floor.push(await measureFloor(fleet, fleetFile, log));
				const f = floor.at(-1)!;
				log(
					`round ${round}: SSH layer alone: ${fixed(f.wallMs / 1000)} s (ratio ${fixed(f.wallMs / idealMs)}), ` +
						`CPU client ${fixed(f.cpuMs / 1000, 1)} s, fleet ${fixed(f.fleetCpuMs / 1000, 1)} s; load ${fixed(loadavg()[0]!)}`
				);
			} catch (err) {
				failures.push(`round ${round}, SSH layer alone: ${(err as Error).message}`);
				log(failures.at(-1)!);
			}
			for (const row of plan) {
				if (only && !only.test(`${row.backend} ${row.flow.kind} ${row.clients}`)) continue;
				let m: Measurement;
				try {
					m = await measureOnce(
						{
							backend: row.backend as (typeof backends)[number],
							flow: row.flow,
							clients: row.clients,
							dir,
							fleet,
							fleetFile,
							pg: row.backend === 'PostgreSQL' ? { url: pgUrl, postmasterPid } : undefined
						},
						log
					);
				} catch (err) {
					// Recorded, not hidden: a run that failed its checks is a result too.
					failures.push(
						`round ${round}, ${row.backend}, ${row.flow.kind}, ${row.clients} clients: ${(err as Error).message}`
					);
					log(failures.at(-1)!);
					continue;
				}
				row.samples.push(m);
				log(
					`round ${round}: ${row.backend}, ${row.flow.kind}, ${row.clients} clients: ${fixed(m.wallMs / 1000)} s ` +
						`(ratio ${fixed(m.wallMs / idealMs)}), RSS ${fixed(m.rssMb, 0)} MB (${fixed(m.runRssMb, 0)} during the run), ${m.eventCount} events, ` +
						`CPU console ${fixed(m.consoleCpuMs / 1000, 1)} s, fleet ${fixed(m.fleetCpuMs / 1000, 1)} s` +
						(m.postgresCpuMs !== null
							? `, PostgreSQL ${fixed(m.postgresCpuMs / 1000, 1)} s, ${m.transactions} transactions`
							: '') +
						(m.latency
							? `, clients ${fixed(m.clientsCpuMs! / 1000, 1)} s; SSE p50 ${fixed(m.latency.p50, 1)} ms, p99 ${fixed(m.latency.p99, 1)} ms, max ${fixed(m.latency.max, 1)} ms over ${m.latency.samples} deliveries`
							: '') +
						`; load ${fixed(loadavg()[0]!)}`
				);
			}
		}
		const loadAfter = loadavg();
		const section = [
			sectionHeading,
			'',
			`Produced by \`${command}\` (bench/engine.ts) on ${started.toISOString()}: ${fleetSize} simulated nodes (in-process ssh2 servers on ${fleetAddress}, in a process of their own), a flow of ${stepCount} steps of ${stepMs} ms, run concurrency ${concurrency} and engine concurrency ${concurrency}. Every measurement starts a fresh console process on a fresh database (PGlite on files; a new database on the throwaway PostgreSQL), registers the nodes, warms up with one run on ${warmupTasks} nodes, then measures one run on all ${fleetSize}. ${rounds} rounds, taken round-robin; the median is shown, and for peak RSS the highest.`,
			'',
			...(await machine(pgUrl)),
			`- Load average (1 min) ${fixed(loadBefore[0]!)} before the run, ${fixed(loadAfter[0]!)} after (the machine is shared; other work may run alongside)`,
			'',
			`Wall time: from the call to createRun to the moment the console's event bus delivers the run's final \`run.state\` event. Ideal: ceil(${fleetSize}/${concurrency}) × ${stepCount} × ${stepMs} ms = ${fixed(idealMs / 1000)} s; ratio = wall ÷ ideal. Peak RSS: the console process's high-water mark (VmHWM), which includes start-up and the warm-up; on PGlite the data folder is created and migrated beforehand in a process of its own (a first start ever runs initdb, which peaks at about 1.2 GB once). RSS during run: the highest RSS the console sampled every 100 ms while the measured run ran. Events: rows in \`events\` for the measured run; events/s = events ÷ wall. SSE latency, per event and client: the time the client process read the chunk completing the event minus the time the console's event writer saw the transaction inserting it commit (both on the machine's clock), over every event of the measured run and every one of the ${clientCount} clients (\`GET /api/events\` through sseResponse and eventStream, over HTTP on 127.0.0.1, clients in a process of their own). CPU: seconds of CPU each process used during the measured run (2 CPUs: at most ${fixed((2 * idealMs) / 1000, 0)} s of CPU fit into the ideal wall time). Each run must end with every task succeeded, no more than ${concurrency} tasks running at once, and every client having received every event once, in order, or the benchmark fails.`,
			'',
			table(plan.filter((r) => r.samples.length)),
			'',
			...floorSummary(floor),
			'',
			`Against issue 22's aims (wall ≤ ${aims.overFloor} × the SSH floor, peak RSS ≤ ${aims.rssMb} MB, SSE p99 ≤ ${aims.p99Ms} ms), for the main flow:`,
			'',
			...verdicts(
				plan.filter((r) => r.samples.length),
				floor
			),
			'',
			...(failures.length
				? ['Measurements that failed their checks (not in the table):', '', ...failures.map((f) => `- ${f}`), '']
				: [])
		];
		return await publishSection(sectionHeading, section, log);
	} finally {
		await fleet?.stop();
		if (pgStarted) await stopPostgres(pgDir).catch(() => {});
		await rm(pgDir, { recursive: true, force: true });
		await rm(dir, { recursive: true, force: true });
	}
}
