/**
 * Update All against ansible-playbook and parallel-ssh on the same 100 testbed hosts, in one run:
 * a new commit of a git role, then every host updated to it at concurrency 20 by Flotilla's engine, by an
 * equivalent playbook (bench/code-sync.playbook.yml) and by an equivalent script per host
 * (bench/code-sync.pssh.sh). Run it with `npm run bench:code-sync`; bench/README.md says what each row
 * measures and how to read the ratios.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { and, eq, sql } from 'drizzle-orm';
import { createRoleSchema } from '../src/lib/schemas/code-sync';
import { systemActor } from '../src/lib/server/audit';
import { notifyCommit } from '../src/lib/server/codesync/notify';
import { triggerUpdate } from '../src/lib/server/codesync/plan';
import { createRole } from '../src/lib/server/codesync/roles';
import { db } from '../src/lib/server/db';
import { runs, tasks, taskSteps } from '../src/lib/server/db/schema';
import { runHealthSweep } from '../src/lib/server/fleet/sweep';
import { SshConnection } from '../src/lib/server/ssh/connection';
import {
	closeWarmConnections,
	configureWarmConnections,
	DEFAULT_WARM,
	warmConnectionCount
} from '../src/lib/server/ssh/warm';
import { startTestbed, type Testbed } from '../tests/testbed/testbed.ts';
import { startBenchConsole, waitForRunEnd } from './console';
import {
	count,
	fixed,
	ssh2Kex,
	machine,
	markdownTable,
	measureRoundRobin,
	median,
	medianAndRuns,
	measureUsage,
	parallelSshBase,
	secondsSince,
	startPostgres,
	stopControlMasters,
	stopPostgres,
	tool,
	publishSection,
	runPlaybook,
	toolSetup,
	waitForAddresses,
	type ToolRow,
	type Usage,
	type ToolSetup,
	type Variant
} from './common';

const command = 'npm run bench:code-sync';
const sectionHeading = '## Code Sync: Update All';

// Overridable like bench:engine's, for a quick look on fewer hosts; docs/benchmarks.md quotes the defaults.
const env = process.env;
const fleetSize = Number(env.BENCH_HOSTS ?? 100);
const firstHost = Number(env.BENCH_FIRST_HOST ?? 140);
const concurrency = Number(env.BENCH_CONCURRENCY ?? 20);
const rounds = Number(env.BENCH_ROUNDS ?? 3);
const role = 'backend';
const repo = `/opt/${role}`;
const unit = `${role}.service`;
/** The aims (issue 22): this many times quicker than ansible-playbook, at most this many times parallel-ssh. */
const aimOverAnsible = 20;
const aimOverParallelSsh = 1.0;
const runTimeoutMs = 15 * 60_000;

const playbook = new URL('./code-sync.playbook.yml', import.meta.url).pathname;
const psshScript = new URL('./code-sync.pssh.sh', import.meta.url).pathname;

interface Row extends ToolRow {
	keyExchange: string;
	/** Sessions open before the timed update (a sweep's, or ControlPersist masters): compared with Flotilla's own such row. */
	warm?: boolean;
}

/** One tool's way of updating the fleet; `measured` makes it a variant that the round-robin runs. */
interface Updater {
	label: string;
	row: Row;
	/** Updates every host to `target`; resolves to the seconds it took. */
	update(target: string): Promise<number>;
}

/** Where one Flotilla run's time went, from the database and from counting its SSH commands. */
interface Diagnosis {
	seconds: number;
	/** Trigger to the first task claimed, and the last task's end to the run's end. */
	toFirstTask: number;
	afterLastTask: number;
	/** Mean over tasks. */
	task: number;
	/** Mean per task of the time spent in its steps, and in its SSH commands (wall time, per command). */
	inSteps: number;
	inExec: number;
	execsPerTask: { min: number; max: number; mean: number };
	/** Σ task time ÷ (concurrency × run time): 1 when every slot was busy from start to end. */
	slotUse: number;
	/** Mean per task: claim to its first step (run and node loaded, connected), and its last step to its end. */
	beforeSteps: number;
	afterSteps: number;
	/** Per step name, the median duration across tasks (s). */
	steps: Map<string, number>;
	/** CPU seconds the console's process and the PostgreSQL server used during the run. */
	consoleCpu: number;
	postgresCpu: number;
	/** The console's event loop: the share of the run it was busy (1: never idle). */
	eventLoop: number;
}

const opensshKex = 'sntrup761x25519-sha512@openssh.com';

/** Every host runs `target`, built by install.sh from that checkout, with the unit restarted: or the bench fails. */
async function checkHosts(bed: Testbed, target: string, who: string): Promise<void> {
	const wrong: string[] = [];
	for (const host of bed.hosts) {
		const commit = await bed.checkedOutCommit(host, role);
		const built = (await readFile(join(host.root, 'opt', role, 'build/REVISION'), 'utf8').catch(() => '')).trim();
		const state = (await readFile(join(host.root, 'var/lib/flotilla-testbed/units', role), 'utf8')).trim();
		if (commit !== target || built !== target || state !== 'active') {
			wrong.push(`${host.name}: on ${commit.slice(0, 12)}, built ${built.slice(0, 12)}, ${role} ${state}`);
		}
	}
	if (wrong.length) {
		throw new Error(`${who}: ${wrong.length} of ${fleetSize} hosts did not end on ${target}:\n${wrong.join('\n')}`);
	}
}

/** Counts SSH commands per connection, and their wall time, for the diagnosis; the commands run unchanged. */
function countExecs() {
	const perNode = new Map<string, { execs: number; ms: number }>();
	const exec = SshConnection.prototype.exec;
	SshConnection.prototype.exec = function (this: SshConnection, ...args: Parameters<typeof exec>) {
		const started = performance.now();
		const entry = perNode.get(this.name) ?? { execs: 0, ms: 0 };
		perNode.set(this.name, entry);
		entry.execs++;
		return exec.apply(this, args).finally(() => (entry.ms += performance.now() - started));
	};
	return {
		perNode,
		restore: () => {
			SshConnection.prototype.exec = exec;
		}
	};
}

async function diagnose(
	runId: string,
	startedAt: number,
	seconds: number,
	execs: ReturnType<typeof countExecs>,
	usage: Usage
): Promise<Diagnosis> {
	const [finished] = await db().select().from(runs).where(eq(runs.id, runId));
	const taskRows = await db()
		.select({ id: tasks.id, startedAt: tasks.startedAt, endedAt: tasks.endedAt })
		.from(tasks)
		.where(eq(tasks.runId, runId));
	const stepRows = await db()
		.select({
			task: taskSteps.taskId,
			startedAt: taskSteps.startedAt,
			endedAt: taskSteps.endedAt,
			name: taskSteps.name,
			seconds: sql<number>`extract(epoch from ${taskSteps.endedAt} - ${taskSteps.startedAt})::float8`
		})
		.from(taskSteps)
		.innerJoin(tasks, eq(tasks.id, taskSteps.taskId))
		.where(and(eq(tasks.runId, runId), eq(taskSteps.phase, 'do')));
	const durations = taskRows.map((t) => (t.endedAt!.getTime() - t.startedAt!.getTime()) / 1000);
	const steps = new Map<string, number[]>();
	for (const s of stepRows) steps.set(s.name, [...(steps.get(s.name) ?? []), s.seconds]);
	const counts = [...execs.perNode.values()];
	const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
	const stepsOf = Map.groupBy(stepRows, (s) => s.task);
	const edges = taskRows.map((t) => {
		const own = stepsOf.get(t.id) ?? [];
		const first = Math.min(...own.map((s) => s.startedAt.getTime()));
		const last = Math.max(...own.map((s) => s.endedAt!.getTime()));
		return { before: (first - t.startedAt!.getTime()) / 1000, after: (t.endedAt!.getTime() - last) / 1000 };
	});
	return {
		...usage,
		beforeSteps: mean(edges.map((e) => e.before)),
		afterSteps: mean(edges.map((e) => e.after)),
		seconds,
		toFirstTask: (Math.min(...taskRows.map((t) => t.startedAt!.getTime())) - startedAt) / 1000,
		afterLastTask: (finished!.endedAt!.getTime() - Math.max(...taskRows.map((t) => t.endedAt!.getTime()))) / 1000,
		task: mean(durations),
		inSteps: stepRows.reduce((a, s) => a + s.seconds, 0) / taskRows.length,
		inExec: counts.reduce((a, c) => a + c.ms, 0) / 1000 / taskRows.length,
		execsPerTask: {
			min: Math.min(...counts.map((c) => c.execs)),
			max: Math.max(...counts.map((c) => c.execs)),
			mean: mean(counts.map((c) => c.execs))
		},
		slotUse: durations.reduce((a, b) => a + b, 0) / (concurrency * seconds),
		steps: new Map([...steps].map(([name, xs]) => [name, median(xs)]))
	};
}

/**
 * Flotilla as an operator uses it: the post-commit hook's notify, then Update All at concurrency 20 on the
 * engine the console runs. Timed from the trigger to the run's end as the engine records it.
 */
function flotilla(diagnoses: Diagnosis[], postmasterPid: number, afterSweep: boolean): Updater {
	return {
		label: afterSweep ? 'flotilla after a sweep' : 'flotilla',
		row: {
			tool: 'Flotilla',
			how: afterSweep
				? `the health sweep (not timed: it leaves every host's session warm), then as above: each task takes its host's warm session`
				: `notify, then Update All at concurrency ${concurrency}: the engine runs the code-sync flow, one connection per host`,
			keyExchange: `${ssh2Kex} (ssh2)${afterSweep ? ', by the sweep' : ''}`,
			warm: afterSweep,
			samples: []
		},
		async update(target) {
			// No session left from an earlier round: each row starts as it says, like ansible's fresh control folder.
			closeWarmConnections();
			// The first row as before warm sessions existed; the second with the default's, room for every host.
			configureWarmConnections(
				afterSweep ? { ...DEFAULT_WARM, max: Math.max(DEFAULT_WARM.max, fleetSize) } : { idleMs: 0, max: 0 }
			);
			if (afterSweep) {
				await runHealthSweep(concurrency);
				if (warmConnectionCount() !== fleetSize)
					throw new Error(`the sweep left ${warmConnectionCount()} of ${fleetSize} sessions warm`);
			}
			await notifyCommit(systemActor, { commit: target, changed_roles: [role], message: 'bench' });
			const execs = countExecs();
			try {
				const usage = await measureUsage(postmasterPid);
				const startedAt = Date.now();
				const { runId } = await triggerUpdate(systemActor, { dry_run: false, concurrency });
				const r = await waitForRunEnd(runId!, runTimeoutMs);
				if (r.state !== 'succeeded') {
					const failed = await db()
						.select({ node: tasks.nodeName, state: tasks.state, error: tasks.error })
						.from(tasks)
						.where(and(eq(tasks.runId, runId!), sql`${tasks.state} <> 'succeeded'`));
					throw new Error(
						`Flotilla's run ended ${r.state} (${r.reason}):\n${failed.map((t) => `${t.node} ${t.state}: ${t.error}`).join('\n')}`
					);
				}
				const seconds = (r.endedAt.getTime() - startedAt) / 1000;
				const used = await usage();
				diagnoses.push(await diagnose(runId!, startedAt, seconds, execs, used));
				return seconds;
			} finally {
				execs.restore();
			}
		}
	};
}

/**
 * The playbook as its users run it: forks 20, pipelining on, host keys checked, ControlPersist keeping each
 * host's connection between tasks. Each run starts from a fresh control directory, so no run inherits
 * connections from the one before, and ends its masters when done.
 */
function ansiblePlaybook(setup: ToolSetup): Updater {
	return {
		label: 'ansible-playbook',
		row: {
			tool: 'ansible-playbook',
			how: `the same steps as a playbook (bench/code-sync.playbook.yml), forks ${concurrency}, pipelining, ControlPersist`,
			keyExchange: `${opensshKex} (OpenSSH default, once per host)`,
			samples: []
		},
		async update(target) {
			const { output, seconds } = await runPlaybook(setup, playbook, { target, repo, unit }, concurrency);
			const clean = count(output, /: ok=\d+ +changed=\d+ +unreachable=0 +failed=0 +skipped=\d+ +rescued=0/);
			if (clean !== fleetSize) throw new Error(`ansible-playbook: ${clean} of ${fleetSize} hosts updated\n${output}`);
			return seconds;
		}
	};
}

/**
 * The script on every host's stdin, `sh -s` running it: one ssh per host, at most 20 at once. `warm`: through
 * ControlPersist masters that a pass of `true` over every host opened just before (not timed), as Flotilla's
 * row after a sweep finds its sessions open.
 */
function parallelSsh(setup: ToolSetup, script: string, kex: 'default' | 'ssh2', warm = false): Updater {
	const extra = kex === 'ssh2' ? ['-O', `KexAlgorithms=${ssh2Kex}`] : [];
	let runs = 0;
	return {
		label: `parallel-ssh ${kex === 'ssh2' ? ssh2Kex : 'default kex'}${warm ? ' warm' : ''}`,
		row: {
			tool: 'parallel-ssh',
			how: warm
				? `a pass of \`true\` over every host (not timed) opening ControlPersist masters, then as above through them`
				: `the same steps as one script per host (bench/code-sync.pssh.sh), -p ${concurrency}`,
			keyExchange: kex === 'ssh2' ? `${ssh2Kex} (-O KexAlgorithms, like for like)` : `${opensshKex} (OpenSSH default)`,
			warm,
			samples: []
		},
		async update(target) {
			const base = [...parallelSshBase(setup, concurrency), ...extra];
			const controlDir = warm ? join(setup.dir, `pssh-cp-${++runs}`) : undefined;
			if (controlDir) {
				await mkdir(controlDir);
				base.push('-O', 'ControlMaster=auto', '-O', `ControlPath=${controlDir}/%C`, '-O', 'ControlPersist=60');
				const opened = count(await tool('parallel-ssh', [...base, 'true'], process.env), /\[SUCCESS\]/);
				if (opened !== fleetSize) throw new Error(`parallel-ssh: ${opened} of ${fleetSize} masters opened`);
			}
			try {
				const start = performance.now();
				const output = await tool(
					'parallel-ssh',
					[...base, '-I', '-i', `sh -s -- ${target} ${repo} ${unit}`],
					process.env,
					script
				);
				const seconds = secondsSince(start);
				const succeeded = count(output, /\[SUCCESS\]/);
				if (succeeded !== fleetSize) throw new Error(`parallel-ssh: ${succeeded} of ${fleetSize} succeeded\n${output}`);
				return seconds;
			} finally {
				if (controlDir) await stopControlMasters(controlDir);
			}
		}
	};
}

/**
 * A variant the round-robin runs: a new commit on the role's origin, the update to it, and the check that every
 * host ended on it.
 */
function measured(bed: Testbed, updater: Updater): Variant<Row> {
	let target = '';
	return {
		label: updater.label,
		rows: [updater.row],
		async run() {
			target = await bed.addCommit(role);
			const seconds = await updater.update(target);
			await checkHosts(bed, target, updater.label);
			return [seconds];
		},
		note: () => `all ${fleetSize} hosts on ${target.slice(0, 12)}`
	};
}

/** Flotilla's two rows: each other tool's row is compared with the one started the same way (warm or not). */
interface Ours {
	cold: Row;
	warm: Row;
}
const counterpart = (row: Row, ours: Ours) => (row.warm ? ours.warm : ours.cold);

function table(rows: Row[], ours: Ours): string {
	return markdownTable(
		[
			{ heading: 'tool' },
			{ heading: 'how' },
			{ heading: 'key exchange' },
			{ heading: 'median (s)', right: true },
			{ heading: 'runs (s)' },
			{ heading: 'ratio to Flotilla', right: true }
		],
		rows.map((row) => [
			row.tool,
			row.how,
			row.keyExchange,
			...medianAndRuns(row.samples),
			fixed(median(row.samples) / median(counterpart(row, ours).samples))
		])
	);
}

/** The aims, each met or missed, in plain words. */
function verdicts(rows: Row[], ours: Ours): string[] {
	return rows
		.filter((row) => row.tool !== 'Flotilla')
		.map((row) => {
			const flotillaSeconds = median(counterpart(row, ours).samples);
			const theirs = median(row.samples);
			const r = theirs / flotillaSeconds;
			if (row.tool === 'ansible-playbook') {
				return `- ansible-playbook took ${fixed(theirs)} s, Flotilla ${fixed(flotillaSeconds)} s: ${fixed(r)}× quicker. Aim ≥ ${aimOverAnsible}×: **${r >= aimOverAnsible ? 'met' : 'missed'}**.`;
			}
			const within = flotillaSeconds / theirs;
			const which = row.warm ? ' through warm masters' : '';
			const ourWay = row.warm ? ' after a sweep' : '';
			return `- parallel-ssh with ${row.keyExchange.split(' ')[0]}${which} took ${fixed(theirs)} s, Flotilla${ourWay} ${fixed(flotillaSeconds)} s: Flotilla ${within <= 1 ? `is ${fixed(1 / within)}× quicker` : `takes ${fixed(within)}× as long`}. Aim within ${aimOverParallelSsh}×: **${within <= aimOverParallelSsh ? 'met' : 'missed'}**.`;
		});
}

function diagnosisTable(diagnoses: Diagnosis[]): string {
	const names = [...(diagnoses[0]?.steps.keys() ?? [])];
	const cell = (pick: (d: Diagnosis) => number, digits = 2) => diagnoses.map((d) => fixed(pick(d), digits)).join(', ');
	return markdownTable(
		[{ heading: 'measure (each measured Flotilla run)' }, { heading: 'values' }],
		[
			['run, trigger to end (s)', cell((d) => d.seconds)],
			['trigger to the first task claimed (s)', cell((d) => d.toFirstTask)],
			["last task's end to the run's end (s)", cell((d) => d.afterLastTask)],
			['one task, claim to end, mean (s)', cell((d) => d.task)],
			['of which before its first step: claim, load, connect (s)', cell((d) => d.beforeSteps)],
			['of which in its steps, mean (s)', cell((d) => d.inSteps)],
			['of which in SSH commands, mean (s)', cell((d) => d.inExec)],
			['of which after its last step: finish, bookkeeping (s)', cell((d) => d.afterSteps)],
			[
				'SSH commands per task (min–max)',
				diagnoses.map((d) => `${d.execsPerTask.min}–${d.execsPerTask.max}`).join(', ')
			],
			[`slot use: Σ task time ÷ (${concurrency} × run time)`, cell((d) => d.slotUse)],
			["CPU used by the console's process during the run (s)", cell((d) => d.consoleCpu)],
			['CPU used by PostgreSQL during the run (s)', cell((d) => d.postgresCpu)],
			['console event loop busy, share of the run', cell((d) => d.eventLoop)],
			...names.map((name) => [`step \`${name}\`, median over tasks (s)`, cell((d) => d.steps.get(name) ?? NaN, 3)])
		]
	);
}

export async function benchmarkCodeSync(log: (line: string) => void = console.log): Promise<string> {
	const started = new Date();
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-code-sync-'));
	// Apart from `dir`: the server runs as the postgres user, which cannot enter root's private folders.
	const pgDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-pg-'));
	let bed: Testbed | undefined;
	let benchConsole: Awaited<ReturnType<typeof startBenchConsole>> | undefined;
	try {
		await waitForAddresses(firstHost, fleetSize, log);
		const loadBefore = loadavg();
		log(`starting ${fleetSize} testbed hosts from 127.0.1.${firstHost} and a throwaway PostgreSQL`);
		const [testbed, { url, postmasterPid }] = await Promise.all([
			startTestbed({ hosts: fleetSize, firstHost, roles: [role] }),
			startPostgres(pgDir)
		]);
		bed = testbed;
		const setup = await toolSetup(bed, dir);

		benchConsole = await startBenchConsole(url, bed, { node: { roles: [role] } });
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: role,
				path: repo,
				units: [unit],
				install_command: ['sh', 'install.sh'],
				health: { type: 'units' },
				health_timeout_seconds: 30
			})
		);

		const diagnoses = { cold: [] as Diagnosis[], warm: [] as Diagnosis[] };
		const cold = flotilla(diagnoses.cold, postmasterPid, false);
		const warm = flotilla(diagnoses.warm, postmasterPid, true);
		const ours: Ours = { cold: cold.row, warm: warm.row };
		const script = await readFile(psshScript, 'utf8');
		const variants = [
			cold,
			warm,
			ansiblePlaybook(setup),
			parallelSsh(setup, script, 'default'),
			parallelSsh(setup, script, 'ssh2'),
			parallelSsh(setup, script, 'ssh2', true)
		].map((updater) => measured(testbed, updater));

		log(`Update All of ${fleetSize} hosts at concurrency ${concurrency}`);
		// The warm-up's diagnosis is not one of the measured runs.
		await measureRoundRobin(variants, rounds, log, () => {
			diagnoses.cold.length = 0;
			diagnoses.warm.length = 0;
		});
		const loadAfter = loadavg();

		const rows = variants.flatMap((v) => v.rows);
		const section = [
			sectionHeading,
			'',
			`Produced by \`${command}\` (bench/code-sync.ts) on ${started.toISOString()}: ${fleetSize} testbed hosts (real OpenSSH sshd on 127.0.1.${firstHost}–${firstHost + fleetSize - 1}), each with a git checkout of the \`${role}\` role at ${repo} cloned from the testbed's origin. Before every update a new commit is added to the origin; every tool then updates all ${fleetSize} hosts to it at concurrency ${concurrency}, and afterwards every host must have that commit checked out, built by install.sh from it, and ${unit} restarted, or the benchmark fails. One warm-up update with each tool, then ${rounds} measured updates each, taken round-robin; the median is shown.`,
			'',
			...(await machine()),
			`- Load average (1 min) ${fixed(loadBefore[0]!)} before the run, ${fixed(loadAfter[0]!)} after (the machine is shared)`,
			'',
			`The same steps everywhere, those of the code-sync flow (src/lib/server/codesync/flow.ts): refuse a dirty tree, record HEAD, \`git fetch\` (two attempts), check the target out detached and confirm HEAD, \`sh install.sh\`, \`systemctl restart ${unit}\`, probe \`systemctl is-active ${unit}\` once a second until healthy (30 s at most); when the switch, install, restart or health check fails, go back to the recorded commit, reinstall, restart and verify. Host keys are verified by every tool (StrictHostKeyChecking=yes against the testbed's known_hosts; Flotilla against the pinned fingerprints). Flotilla also writes what each node runs to its database (the flow's record step) and every step, event and output line of the run. Ratio to Flotilla: the row's median ÷ Flotilla's (a row with sessions opened before the timed update ÷ Flotilla's after a sweep, every other row ÷ Flotilla's first); above 1 the tool took longer. Warm sessions last 60 s (FLOTILLA_SSH_WARM_SECONDS=60 for Flotilla's row after a sweep, off for its first; ControlPersist=60): each row with them opens them just before, and no row inherits another's (Flotilla's are closed before each of its updates).`,
			'',
			table(rows, ours),
			'',
			...verdicts(rows, ours),
			'',
			`Where Flotilla's time went, per measured run (from the run's tasks and task_steps, and SSH commands counted on each connection), without warm sessions:`,
			'',
			diagnosisTable(diagnoses.cold),
			'',
			`And after a sweep, each task on its host's warm session (the sweep itself not counted):`,
			'',
			diagnosisTable(diagnoses.warm),
			''
		];
		return await publishSection(sectionHeading, section, log);
	} finally {
		await benchConsole?.stop();
		// Said out loud: a server left running here would hold its port and files until someone notices.
		await stopPostgres(pgDir).catch((error: Error) =>
			log(`could not stop the throwaway PostgreSQL in ${pgDir}: ${error.message}`)
		);
		await bed?.stop();
		await rm(dir, { recursive: true, force: true });
	}
}
