/**
 * A system update scan of 100 testbed hosts at concurrency 20, by Flotilla's engine (the `system-scan` flow:
 * `apt-get update`, `apt list --upgradable`, holds, reboot-required, needrestart in one command, recorded in the
 * database), by parallel-ssh running that same command (the SSH floor), by
 * `ansible all -f 20 -m shell -a <that same command>`, and by Ansible running
 * `apt list --upgradable` alone, on the same hosts, alternated, in one run.
 * Every host has packages pending (security and not). Run it with `npm run bench:system-scan` when no one else
 * uses the machine; the section it writes in docs/benchmarks.md names the machine. The aim is against the same
 * reads; Ansible's apt list alone (less than a scan, nothing recorded) is the floor of Flotilla's advantage.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { eq } from 'drizzle-orm';
import { systemActor } from '../src/lib/server/audit';
import { db } from '../src/lib/server/db';
import { sysNodeScans } from '../src/lib/server/db/schema';
import { startScan } from '../src/lib/server/sysupdates/runs';
import { APT_LOCK_TIMEOUT_SECONDS, buildScanCommand } from '../src/lib/server/sysupdates/scan';
import { startTestbed } from '../tests/testbed/testbed.ts';
import { startBenchConsole, timeRun } from './console';
import {
	ansibleEnv,
	count,
	cpuSummary,
	fixed,
	ssh2Kex,
	machine,
	median,
	parallelSshBase,
	publishSection,
	startPostgres,
	stopControlMasters,
	stopPostgres,
	tool,
	toolSetup,
	type Usage
} from './common';

const command = 'npm run bench:system-scan';
const sectionHeading = '## System Updates: scan';
const fleetSize = 100;
const firstHost = 140;
const concurrency = 20;
const rounds = 3;
const aimOverAnsible = 10;

export async function benchmarkSystemScan(log: (line: string) => void = console.log): Promise<void> {
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-scan-'));
	// Its own top-level folder: the server runs as postgres, which cannot enter `dir` (mkdtemp makes it 0700).
	const pgDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-pg-'));
	const bed = await startTestbed({ hosts: fleetSize, firstHost });
	let benchConsole: Awaited<ReturnType<typeof startBenchConsole>> | undefined;
	try {
		for (const host of bed.hosts) {
			await bed.setPackages(host, [
				{
					name: 'curl',
					arch: 'amd64',
					installed: '7.88.1-10+deb12u7',
					candidate: '7.88.1-10+deb12u8',
					suites: ['bookworm']
				},
				{
					name: 'libc6',
					arch: 'amd64',
					installed: '2.36-9+deb12u8',
					candidate: '2.36-9+deb12u9',
					suites: ['bookworm-security']
				},
				{
					name: 'openssl',
					arch: 'amd64',
					installed: '3.0.14-1~deb12u2',
					candidate: '3.0.15-1~deb12u1',
					suites: ['bookworm-security']
				}
			]);
		}
		const pg = await startPostgres(pgDir);
		benchConsole = await startBenchConsole(pg.url, bed, { engine: { concurrency, leaseMs: 30_000, sweepMs: 5_000 } });
		const setup = await toolSetup(bed, dir);

		const used: Usage[] = [];
		const flotilla = async () => {
			const { seconds, usage } = await timeRun(
				pg.postmasterPid,
				async () => (await startScan(systemActor, { refresh: true })).id
			);
			used.push(usage);
			const scanned = await db().select().from(sysNodeScans).where(eq(sysNodeScans.securityCount, 2));
			if (scanned.length !== fleetSize) throw new Error(`Flotilla recorded ${scanned.length} of ${fleetSize} scans`);
			return seconds;
		};
		// Ansible runs the scan's own reads (the same command, its markers included), then, as the floor of
		// Flotilla's advantage, `apt list --upgradable` alone.
		const sameReads = buildScanCommand('flotilla-scan-bench', true, APT_LOCK_TIMEOUT_SECONDS).script;
		const ansible = async (shell: string) => {
			const controlDir = join(dir, `cp-${Date.now()}`);
			const started = performance.now();
			const out = await tool(
				'ansible',
				['all', '-i', setup.inventory, '-f', String(concurrency), '-m', 'shell', '-a', shell],
				ansibleEnv(controlDir)
			);
			const seconds = (performance.now() - started) / 1000;
			await stopControlMasters(controlDir);
			const ok = count(out, /\| CHANGED \| rc=0 >>/g);
			if (ok !== fleetSize) throw new Error(`ansible answered for ${ok} of ${fleetSize} hosts`);
			return seconds;
		};

		// The floor any SSH tool has for these reads: parallel-ssh, one OpenSSH session per host running the same
		// command (`sh -s`, the script on stdin), with ssh2's key exchange.
		const psshFloor = async () => {
			const started = performance.now();
			const out = await tool(
				'parallel-ssh',
				[...parallelSshBase(setup, concurrency), '-O', `KexAlgorithms=${ssh2Kex}`, '-I', 'sh -s'],
				process.env,
				sameReads
			);
			const seconds = (performance.now() - started) / 1000;
			const ok = count(out, /\[SUCCESS\]/g);
			if (ok !== fleetSize) throw new Error(`parallel-ssh: ${ok} of ${fleetSize} succeeded\n${out}`);
			return seconds;
		};

		const samples = { flotilla: [] as number[], pssh: [] as number[], same: [] as number[], list: [] as number[] };
		for (let i = 0; i < rounds; i++) {
			samples.flotilla.push(await flotilla());
			samples.pssh.push(await psshFloor());
			samples.same.push(await ansible(sameReads));
			samples.list.push(await ansible('apt list --upgradable'));
			const u = used.at(-1)!;
			log(
				`round ${i + 1}: Flotilla ${fixed(samples.flotilla.at(-1)!)} s (console CPU ${fixed(u.consoleCpu)} s, ` +
					`PostgreSQL ${fixed(u.postgresCpu)} s, event loop busy ${fixed(u.eventLoop * 100, 0)}%), ` +
					`parallel-ssh ${fixed(samples.pssh.at(-1)!)} s, Ansible the same reads ${fixed(samples.same.at(-1)!)} s, apt list only ${fixed(samples.list.at(-1)!)} s`
			);
		}
		const f = median(samples.flotilla);
		const pssh = median(samples.pssh);
		const same = median(samples.same);
		const list = median(samples.list);
		await publishSection(
			sectionHeading,
			[
				sectionHeading,
				'',
				`\`${command}\`: ${fleetSize} testbed hosts, concurrency ${concurrency}, median of ${rounds} alternated rounds.`,
				'',
				'| tool | what it does per host | median (s) | ÷ Flotilla |',
				'| --- | --- | --- | --- |',
				`| Flotilla \`system-scan\` | apt-get update, apt list --upgradable, apt-mark showhold, reboot-required, needrestart -b, in one command; recorded | ${fixed(f)} | 1 |`,
				`| \`parallel-ssh -I 'sh -s'\` (${ssh2Kex}), the same command | the same reads; nothing recorded: the SSH floor | ${fixed(pssh)} | ${fixed(pssh / f, 2)}× |`,
				`| \`ansible -m shell\`, the same command | the same reads; nothing recorded | ${fixed(same)} | ${fixed(same / f, 1)}× |`,
				`| \`ansible -m shell -a 'apt list --upgradable'\` | apt list --upgradable only | ${fixed(list)} | ${fixed(list / f, 1)}× |`,
				'',
				`The same scan with Ansible ÷ Flotilla: **${fixed(same / f, 1)}×** (aim: at least ${aimOverAnsible}×); ` +
					`against Ansible doing less (apt list only): ${fixed(list / f, 1)}×. Flotilla takes ` +
					`${fixed(f / pssh)}× the time of parallel-ssh running the same command; Ansible the same reads ÷ ` +
					`parallel-ssh: ${fixed(same / pssh, 1)}×, the most any SSH tool could be quicker than Ansible here.`,
				'',
				cpuSummary(used),
				'',
				...(await machine())
			],
			log
		);
	} finally {
		await benchConsole?.stop();
		await bed.stop();
		await stopPostgres(pgDir).catch(() => {});
		await rm(pgDir, { recursive: true, force: true });
		await rm(dir, { recursive: true, force: true });
	}
}
