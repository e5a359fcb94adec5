/**
 * What every benchmark in bench/ shares: running the other tools, rows and their round-robin measurement,
 * medians and markdown tables, the CPU time of processes and of a throwaway PostgreSQL server, the machine
 * description, and writing a section of docs/benchmarks.md without touching the others.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { format, resolveConfig } from 'prettier';
import { writeInventories } from '../tests/testbed/inventory.ts';
import type { Testbed } from '../tests/testbed/testbed.ts';

export const run = promisify(execFile);

const docsPath = new URL('../docs/benchmarks.md', import.meta.url).pathname;

/** Runs a tool (with `input` on its stdin); a non-zero exit fails with the tail of what it printed. */
export async function tool(file: string, args: string[], env?: NodeJS.ProcessEnv, input?: string): Promise<string> {
	try {
		const running = run(file, args, { env, maxBuffer: 64 << 20 });
		if (input !== undefined) running.child.stdin?.end(input);
		const { stdout } = await running;
		return stdout;
	} catch (error) {
		const e = error as Error & { stdout?: string; stderr?: string };
		const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
		throw new Error(`${file} ${args.join(' ')} failed: ${e.message}\n${output}`, { cause: error });
	}
}

/** The sha256 of a file, in hex. */
export async function sha256Of(path: string): Promise<string> {
	const hash = createHash('sha256');
	await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
	return hash.digest('hex');
}

/** A file of `bytes` random bytes (incompressible, as an image or a release archive is). */
export async function writeRandomFile(path: string, bytes: number): Promise<void> {
	const chunk = 8 << 20;
	async function* chunks() {
		for (let written = 0; written < bytes; written += chunk) yield randomBytes(Math.min(chunk, bytes - written));
	}
	await pipeline(Readable.from(chunks()), createWriteStream(path));
}

/**
 * Another engineer's testbed on 127.0.1.<first>… (`count` addresses) would make ours fail to start (or, worse,
 * make a tool talk to their hosts): wait until none of them listens.
 */
export async function waitForAddresses(first: number, count: number, log: (line: string) => void): Promise<void> {
	const ours = (address: string) => {
		const m = /^127\.0\.1\.(\d+):/.exec(address);
		return m !== null && Number(m[1]) >= first && Number(m[1]) < first + count;
	};
	const until = Date.now() + 30 * 60_000;
	for (;;) {
		const { stdout } = await run('ss', ['-Hltn']);
		const busy = [...new Set(stdout.split('\n').map((line) => line.trim().split(/\s+/)[3] ?? ''))].filter(ours);
		if (!busy.length) return;
		if (Date.now() > until) throw new Error(`127.0.1.${first}+ still in use after 30 min: ${busy.join(' ')}`);
		log(`waiting: ${busy.length} of our addresses are in use (${busy.slice(0, 3).join(' ')} ...)`);
		await new Promise((r) => setTimeout(r, 20_000));
	}
}

export function secondsSince(start: number): number {
	return (performance.now() - start) / 1000;
}

/** Lines of `output` that match `pattern` (a `g` flag is dropped: its lastIndex would skip matches on the next line). */
export function count(output: string, pattern: RegExp): number {
	const line = new RegExp(pattern.source, pattern.flags.replace('g', ''));
	return output.split('\n').filter((l) => line.test(l)).length;
}

export function median(samples: number[]): number {
	const sorted = [...samples].sort((a, b) => a - b);
	const mid = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fixed = (n: number, digits = 2) => n.toFixed(digits);

/** The key exchange ssh2 negotiates with OpenSSH 9.2; parallel-ssh rows compared like for like use it too. */
export const ssh2Kex = 'curve25519-sha256';

/** One line of a result table: one sample per measured run (seconds, unless the row's type says otherwise). */
export interface Row<Sample = number> {
	samples: Sample[];
}

/** A row that compares a tool with the others: which tool, and how it was run. */
export interface ToolRow extends Row {
	tool: string;
	how: string;
}

/** Something measured: each run yields one duration (s) per row it feeds, in the order of `rows`. */
export interface Variant<R extends Row = ToolRow> {
	label: string;
	rows: R[];
	run(): Promise<number[]>;
	/** Said after the seconds on the run's progress line (what the run left behind, say). */
	note?(): string;
}

/**
 * One warm-up run of every variant, not recorded, then `rounds` measured runs taken round-robin (run 1 of
 * every variant, then run 2, ...), so that drift on the machine spreads over every tool instead of landing on
 * one. `afterWarmUp` runs between the two, for a benchmark that records more than the rows' samples.
 */
export async function measureRoundRobin<R extends Row>(
	variants: Variant<R>[],
	rounds: number,
	log: (line: string) => void,
	afterWarmUp?: () => void
): Promise<void> {
	const say = (what: string, variant: Variant<R>, seconds: number[]) =>
		log(
			`  ${what} ${variant.label}: ${seconds.map((s) => fixed(s)).join(' / ')} s${variant.note ? `, ${variant.note()}` : ''}`
		);
	for (const variant of variants) say('warm-up ', variant, await variant.run());
	afterWarmUp?.();
	for (let round = 1; round <= rounds; round++) {
		for (const variant of variants) {
			const seconds = await variant.run();
			variant.rows.forEach((row, i) => row.samples.push(seconds[i]!));
			say(`run ${round}/${rounds}`, variant, seconds);
		}
	}
}

/** A column of a markdown table; `right` aligns its cells to the right (numbers). */
export interface Column {
	heading: string;
	right?: boolean;
}

/** A markdown table of `cells`, one array a line, in the order of `columns`. */
export function markdownTable(columns: Column[], cells: string[][]): string {
	return [
		`| ${columns.map((c) => c.heading).join(' | ')} |`,
		`| ${columns.map((c) => (c.right ? '---:' : '---')).join(' | ')} |`,
		...cells.map((line) => `| ${line.join(' | ')} |`)
	].join('\n');
}

/** The "median (s)" and "runs (s)" cells of a row of seconds. */
export function medianAndRuns(samples: number[]): [string, string] {
	return [fixed(median(samples)), samples.map((s) => fixed(s)).join(', ')];
}

/** The fields of /proc/PID/stat after the command name (which may hold spaces); none once the process is gone. */
async function procStat(pid: number | string): Promise<string[]> {
	const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
	return text ? text.slice(text.lastIndexOf(')') + 2).split(' ') : [];
}

/** /proc counts CPU time in clock ticks of 1/100 s (USER_HZ, the same on every Linux architecture we run on). */
const ticksToMs = (ticks: number) => (ticks * 1000) / 100;

/** CPU time (user + system) a process has used so far, from /proc; 0 once it is gone. */
export async function cpuMsOf(pid: number): Promise<number> {
	// In the fields after the command name, state is [0], ppid [1], utime [11], stime [12] (stat(5): 14 and 15).
	const fields = await procStat(pid);
	return ticksToMs(Number(fields[11] ?? 0) + Number(fields[12] ?? 0));
}

/**
 * CPU time a PostgreSQL server has used so far: its postmaster, its live backends, and every backend that has
 * exited, whose time the kernel adds to the postmaster's cutime and cstime ([13], [14]) when it reaps them. A
 * backend that exits during a measured run (a pool closing a connection, a dropped database) spent its CPU on
 * that run: read from the live processes alone, its time would vanish from the second reading and the run's
 * figure would come out too low, even below zero.
 */
export async function postgresCpuMs(postmasterPid: number): Promise<number> {
	const own = await procStat(postmasterPid);
	let ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(own[i] ?? 0), 0);
	for (const entry of await readdir('/proc')) {
		if (!/^\d+$/.test(entry)) continue;
		const fields = await procStat(entry);
		if (Number(fields[1]) === postmasterPid) ticks += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
	}
	return ticksToMs(ticks);
}

/**
 * Reads the CPU time (ms) of each of `sources` now; the function it returns reads them again and answers what
 * each used in between.
 */
export async function cpuUsedFrom<K extends string>(
	sources: Record<K, () => Promise<number>>
): Promise<() => Promise<Record<K, number>>> {
	const read = async () => {
		const now = {} as Record<K, number>;
		for (const key of Object.keys(sources) as K[]) now[key] = await sources[key]();
		return now;
	};
	const before = await read();
	return async () => {
		const after = await read();
		for (const key of Object.keys(sources) as K[]) after[key] -= before[key];
		return after;
	};
}

/** What the console and its database spent during one run, measured around it. */
export interface Usage {
	consoleCpu: number;
	postgresCpu: number;
	eventLoop: number;
}

/** The median CPU of measured Flotilla rounds, as a sentence for a benchmark's section. */
export function cpuSummary(used: Usage[]): string {
	return (
		`CPU per Flotilla round, median: the console ${fixed(median(used.map((u) => u.consoleCpu)))} s, PostgreSQL ` +
		`${fixed(median(used.map((u) => u.postgresCpu)))} s; the console's event loop was busy ` +
		`${fixed(median(used.map((u) => u.eventLoop)) * 100, 0)}% of the run.`
	);
}

export async function measureUsage(postmasterPid: number): Promise<() => Promise<Usage>> {
	const cpu = process.cpuUsage();
	const loop = performance.eventLoopUtilization();
	const used = await cpuUsedFrom({ postgres: () => postgresCpuMs(postmasterPid) });
	return async () => {
		const own = process.cpuUsage(cpu);
		return {
			consoleCpu: (own.user + own.system) / 1e6,
			postgresCpu: (await used()).postgres / 1000,
			eventLoop: performance.eventLoopUtilization(loop).utilization
		};
	};
}

const throwawayPostgres = new URL('../scripts/throwaway-postgres.sh', import.meta.url).pathname;

/**
 * Starts a throwaway PostgreSQL server (scripts/throwaway-postgres.sh) in `dir`, a folder of its own: the
 * server runs as the postgres user, which cannot enter root's private folders.
 */
export async function startPostgres(dir: string): Promise<{ url: string; postmasterPid: number }> {
	const { stdout } = await run('bash', [throwawayPostgres, 'start', dir]);
	try {
		const postmasterPid = Number((await readFile(join(dir, 'data/postmaster.pid'), 'utf8')).split('\n')[0]);
		return { url: stdout.trim().split('\n').at(-1)!, postmasterPid };
	} catch (error) {
		await stopPostgres(dir).catch(() => {});
		throw error;
	}
}

/** Stops the server `startPostgres` started in `dir` and removes `dir`. */
export async function stopPostgres(dir: string): Promise<void> {
	await run('bash', [throwawayPostgres, 'stop', dir]);
}

/**
 * Ansible as its users run it: host keys checked, pipelining on, ControlPersist (Ansible's default) keeping
 * each host's connection in `controlDir`, a fresh one per measured run.
 */
export function ansibleEnv(controlDir: string): NodeJS.ProcessEnv {
	return {
		...process.env,
		ANSIBLE_HOST_KEY_CHECKING: 'True',
		ANSIBLE_PIPELINING: 'True',
		// No interpreter discovery round trip (and no warning about it) on every host.
		ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3',
		ANSIBLE_SSH_CONTROL_PATH_DIR: controlDir,
		ANSIBLE_NOCOLOR: '1'
	};
}

/**
 * `playbook` by ansible-playbook on the testbed's inventory, `forks` hosts at once, with `vars`, as its users run
 * it (ansibleEnv, no retry files) in a ControlPersist folder of its own, whose masters are ended afterwards.
 */
export async function runPlaybook(
	setup: ToolSetup,
	playbook: string,
	vars: Record<string, string>,
	forks: number
): Promise<{ output: string; seconds: number }> {
	const controlDir = await mkdtemp(join(setup.dir, 'cp-'));
	try {
		const start = performance.now();
		const output = await tool(
			'ansible-playbook',
			[
				'-i',
				setup.inventory,
				'-f',
				String(forks),
				...Object.entries(vars).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
				playbook
			],
			{ ...ansibleEnv(controlDir), ANSIBLE_RETRY_FILES_ENABLED: 'False' }
		);
		return { output, seconds: secondsSince(start) };
	} finally {
		await stopControlMasters(controlDir);
	}
}

/** Ends the ControlPersist masters Ansible left in `controlDir`, and removes it. */
export async function stopControlMasters(controlDir: string): Promise<void> {
	const sockets = await readdir(controlDir).catch(() => []);
	await Promise.all(
		sockets.map((socket) =>
			run('ssh', ['-o', `ControlPath=${join(controlDir, socket)}`, '-O', 'exit', 'control-master']).catch(() => {})
		)
	);
	await rm(controlDir, { recursive: true, force: true });
}

/** The first line a command prints about its version, or why it could not be read. */
export async function toolVersion(file: string, args: string[]): Promise<string> {
	try {
		const { stdout, stderr } = await run(file, args);
		return `${stdout}${stderr}`.trim().split('\n')[0]!;
	} catch (error) {
		return `unknown (${(error as Error).message})`;
	}
}

/** The installed version of an npm package. */
export async function packageVersion(name: string): Promise<string> {
	const path = new URL(`../node_modules/${name}/package.json`, import.meta.url).pathname;
	return (JSON.parse(await readFile(path, 'utf8')) as { version: string }).version;
}

/** The machine's CPUs and memory, as a list item. */
export function cpusLine(): string {
	return `- CPUs: ${availableParallelism()} (nproc) × ${cpus()[0]?.model ?? 'unknown'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM`;
}

/** The machine and tool versions, as list items for a section. */
export async function machine(): Promise<string[]> {
	const version = toolVersion;
	return [
		cpusLine(),
		`- Node ${process.version}, ssh2 ${await packageVersion('ssh2')}`,
		`- ${await version('ssh', ['-V'])} (client and the testbed's sshd)`,
		`- parallel-ssh ${await version('parallel-ssh', ['--version'])}, ${await version('ansible', ['--version'])}`
	];
}

export function replaceSection(existing: string | null, heading: string, section: string): string {
	if (existing === null) {
		return `# Benchmarks\n\nMeasured tables from the scripts in \`bench/\` (how to run them: bench/README.md). Each section names the command that produced it and the machine it ran on. Ratios compare tools measured in the same run on the same testbed hosts: they carry over to other machines better than the seconds do.\n\n${section}`;
	}
	const lines = existing.split('\n');
	const start = lines.indexOf(heading);
	if (start === -1) return `${existing.trimEnd()}\n\n${section}`;
	const after = lines.findIndex((line, i) => i > start && line.startsWith('## '));
	const rest = after === -1 ? '' : `\n${lines.slice(after).join('\n')}`;
	return `${lines.slice(0, start).join('\n')}${start > 0 ? '\n' : ''}${section}${rest}`;
}

/** Writes `section` (which starts with `heading`) into docs/benchmarks.md, replacing only that section. */
export async function writeSection(heading: string, section: string): Promise<string> {
	const existing = await readFile(docsPath, 'utf8').catch(() => null);
	await mkdir(join(docsPath, '..'), { recursive: true });
	// Formatted as `npm run lint` expects, so a fresh run never leaves the repository failing its checks.
	const document = replaceSection(existing, heading, section);
	await writeFile(docsPath, await format(document, { ...(await resolveConfig(docsPath)), filepath: docsPath }));
	return docsPath;
}

/**
 * Joins `lines` into a section (its first line is `heading`), writes it into docs/benchmarks.md in place of the
 * old one, and prints it with where it went.
 */
export async function publishSection(heading: string, lines: string[], log: (line: string) => void): Promise<string> {
	const section = lines.join('\n');
	const docsPath = await writeSection(heading, section);
	log(`\n${section}`);
	log(`written to ${docsPath}`);
	return section;
}

/** What the external tools need to reach a testbed: its hosts' addresses, an Ansible inventory, ssh options. */
export interface ToolSetup {
	bed: Testbed;
	dir: string;
	hostsFile: string;
	inventory: string;
	sshOptions: string[];
}

/** parallel-ssh's arguments for the testbed hosts as root, `concurrency` at once, no timeout; the caller adds the rest. */
export function parallelSshBase(setup: ToolSetup, concurrency: number): string[] {
	return ['-p', String(concurrency), '-t', '0', '-h', setup.hostsFile, '-l', 'root', '-x', setup.sshOptions.join(' ')];
}

/** Writes the inventories and host list for `bed` into `dir`; ssh checks host keys as every tool here does. */
export async function toolSetup(bed: Testbed, dir: string): Promise<ToolSetup> {
	const { ini } = await writeInventories(bed);
	const hostsFile = join(dir, 'hosts.txt');
	await writeFile(hostsFile, bed.hosts.map((host) => `${host.address}\n`).join(''));
	return {
		bed,
		dir,
		hostsFile,
		inventory: ini,
		sshOptions: [
			'-i',
			bed.clientPrivateKeyPath,
			'-o',
			`UserKnownHostsFile=${bed.knownHostsPath}`,
			'-o',
			'StrictHostKeyChecking=yes',
			'-o',
			'IdentitiesOnly=yes',
			'-o',
			'BatchMode=yes'
		]
	};
}
