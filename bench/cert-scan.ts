/**
 * A certificate scan of 100 testbed hosts at concurrency 20 (issue 22's third aim: at least 10× quicker than the
 * same with Ansible), in one run, alternated:
 * - Flotilla's engine: the `cert-scan` flow (src/lib/server/certs/scan.ts): per node, the role's certificate
 *   file read over SSH and parsed, the endpoint's certificate fetched by a TLS handshake from the console and its
 *   chain verified against the trusted CA, both recorded in the inventory;
 * - a script per host, 20 at once (`xargs -P`): `ssh … openssl x509` on the node, then `openssl s_client` from
 *   here, verified against the same CA: the same work, nothing recorded;
 * - parallel-ssh reading and parsing the file on each node (no handshake, nothing recorded);
 * - ansible-playbook with bench/cert-scan.playbook.yml: `x509_certificate_info` on the node and
 *   `get_certificate` from the controller, verified against the same CA.
 * Every host serves its certificate on :8443 (the testbed's `openssl s_server`). Run it with
 * `npm run bench:cert-scan` when no one else uses the machine; the section it writes in docs/benchmarks.md
 * names the machine.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { certRoleSchema } from '../src/lib/schemas/certificates';
import { systemActor } from '../src/lib/server/audit';
import { trustAuthority } from '../src/lib/server/certs/authority';
import { listInventory } from '../src/lib/server/certs/inventory';
import { defineCertRole } from '../src/lib/server/certs/roles';
import { startScan } from '../src/lib/server/certs/scan';
import { closeWarmConnections } from '../src/lib/server/ssh/warm';
import { hostPaths, startTestbed } from '../tests/testbed/testbed.ts';
import { startBenchConsole, waitForRunEnd } from './console';
import {
	ansibleEnv,
	count,
	fixed,
	machine,
	measureUsage,
	median,
	parallelSshBase,
	publishSection,
	ssh2Kex,
	startPostgres,
	stopControlMasters,
	stopPostgres,
	tool,
	toolSetup,
	type Usage
} from './common';

const command = 'npm run bench:cert-scan';
const sectionHeading = '## Certificates: scan';
const fleetSize = Number(process.env.BENCH_HOSTS ?? 100);
const firstHost = Number(process.env.BENCH_FIRST_HOST ?? 140);
const concurrency = 20;
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const aimOverAnsible = 10;
const port = 8443;
const playbook = new URL('./cert-scan.playbook.yml', import.meta.url).pathname;

export async function benchmarkCertScan(log: (line: string) => void = console.log): Promise<void> {
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-certs-'));
	// Its own top-level folder: the server runs as postgres, which cannot enter `dir` (mkdtemp makes it 0700).
	const pgDir = await mkdtemp(join(tmpdir(), 'flotilla-bench-pg-'));
	const bed = await startTestbed({ hosts: fleetSize, firstHost, roles: [] });
	let benchConsole: Awaited<ReturnType<typeof startBenchConsole>> | undefined;
	try {
		const pg = await startPostgres(pgDir);
		benchConsole = await startBenchConsole(pg.url, bed, {
			node: { roles: ['web'] },
			engine: { concurrency, leaseMs: 30_000, sweepMs: 5_000 }
		});
		await defineCertRole(
			systemActor,
			certRoleSchema.parse({
				role: 'web',
				cert_path: hostPaths.tlsCert,
				key_path: hostPaths.tlsKey,
				endpoints: [{ port }],
				// Never run: a scan reads and reloads nothing.
				reload_command: ['systemctl', 'reload', hostPaths.tlsUnit]
			})
		);
		await trustAuthority(systemActor, { name: 'testbed CA', cert_pem: await readFile(bed.caCertPath, 'utf8') });
		const setup = await toolSetup(bed, dir);

		const used: Usage[] = [];
		const flotilla = async () => {
			// No session left from the round before: every round logs in, as every other tool's does.
			closeWarmConnections();
			const usage = await measureUsage(pg.postmasterPid);
			const started = Date.now();
			const run = await startScan(systemActor);
			const r = await waitForRunEnd(run.runId, 600_000);
			if (r.state !== 'succeeded') throw new Error(`scan run ended ${r.state} (${r.reason})`);
			const seconds = (r.endedAt.getTime() - started) / 1000;
			used.push(await usage());
			const items = await listInventory();
			const verified = items.filter((i) => !i.error && i.chain_verified);
			if (verified.length !== fleetSize * 2)
				throw new Error(`Flotilla recorded ${verified.length} verified certificates of ${fleetSize * 2}`);
			return seconds;
		};

		const facts = `openssl x509 -noout -fingerprint -sha256 -subject -issuer -enddate`;
		// The same work as a shell script per host: the file parsed on the node, the endpoint's certificate
		// fetched and its chain verified here (`-verify_return_error`: a chain that fails prints nothing).
		const perHost = [
			`ssh ${setup.sshOptions.join(' ')} -o KexAlgorithms=${ssh2Kex} -l root "$1" '${facts} -in ${hostPaths.tlsCert}'`,
			`openssl s_client -connect "$1:${port}" -CAfile ${bed.caCertPath} -verify_return_error </dev/null 2>/dev/null | ${facts}`
		].join(' && ');
		const script = async () => {
			const started = performance.now();
			const out = await tool('sh', [
				'-c',
				`xargs -P ${concurrency} -n 1 sh -c '${perHost.replaceAll("'", `'\\''`)}' _ < ${setup.hostsFile}`
			]);
			const seconds = (performance.now() - started) / 1000;
			const ok = count(out, /sha256 Fingerprint=/g);
			if (ok !== fleetSize * 2) throw new Error(`the script printed ${ok} of ${fleetSize * 2} certificates\n${out}`);
			return seconds;
		};

		const psshFloor = async () => {
			const started = performance.now();
			const out = await tool('parallel-ssh', [
				...parallelSshBase(setup, concurrency),
				'-O',
				`KexAlgorithms=${ssh2Kex}`,
				'-i',
				`${facts} -in ${hostPaths.tlsCert}`
			]);
			const seconds = (performance.now() - started) / 1000;
			const ok = count(out, /\[SUCCESS\]/g);
			if (ok !== fleetSize) throw new Error(`parallel-ssh: ${ok} of ${fleetSize} succeeded\n${out}`);
			return seconds;
		};

		const ansible = async () => {
			const controlDir = join(dir, `cp-${Date.now()}`);
			const started = performance.now();
			const out = await tool(
				'ansible-playbook',
				[
					'-i',
					setup.inventory,
					'-f',
					String(concurrency),
					'-e',
					`cert_path=${hostPaths.tlsCert}`,
					'-e',
					`port=${port}`,
					'-e',
					`ca_cert=${bed.caCertPath}`,
					playbook
				],
				ansibleEnv(controlDir)
			);
			const seconds = (performance.now() - started) / 1000;
			await stopControlMasters(controlDir);
			const ok = count(out, /: ok=2 .* failed=0 /g);
			if (ok !== fleetSize) throw new Error(`ansible-playbook: ${ok} of ${fleetSize} hosts ok\n${out.slice(-3000)}`);
			return seconds;
		};

		const samples = { flotilla: [] as number[], script: [] as number[], pssh: [] as number[], ansible: [] as number[] };
		for (let i = 0; i < rounds; i++) {
			samples.flotilla.push(await flotilla());
			samples.script.push(await script());
			samples.pssh.push(await psshFloor());
			samples.ansible.push(await ansible());
			const u = used.at(-1)!;
			log(
				`round ${i + 1}: Flotilla ${fixed(samples.flotilla.at(-1)!)} s (console CPU ${fixed(u.consoleCpu)} s, ` +
					`PostgreSQL ${fixed(u.postgresCpu)} s, event loop busy ${fixed(u.eventLoop * 100, 0)}%), ` +
					`a script per host ${fixed(samples.script.at(-1)!)} s, parallel-ssh ${fixed(samples.pssh.at(-1)!)} s, ` +
					`ansible-playbook ${fixed(samples.ansible.at(-1)!)} s`
			);
		}
		const f = median(samples.flotilla);
		const s = median(samples.script);
		const p = median(samples.pssh);
		const a = median(samples.ansible);
		const runs = (xs: number[]) => xs.map((x) => fixed(x)).join(', ');
		await publishSection(
			sectionHeading,
			[
				sectionHeading,
				'',
				`\`${command}\` (bench/cert-scan.ts): ${fleetSize} testbed hosts, each serving its certificate on :${port} ` +
					`(\`openssl s_server\`), concurrency ${concurrency}, ${rounds} rounds alternated, median shown. Every ` +
					`tool checks host keys; the chain is verified against the testbed's CA by Flotilla, the script and Ansible.`,
				'',
				'| tool | what it does per host | median (s) | runs (s) | ÷ Flotilla |',
				'| --- | --- | --- | --- | --- |',
				`| Flotilla \`cert-scan\` | the file read over SSH and parsed; the endpoint's certificate fetched by a TLS handshake from the console, chain verified; both recorded in the inventory | ${fixed(f)} | ${runs(samples.flotilla)} | 1 |`,
				`| a script per host (\`xargs -P ${concurrency}\`), ${ssh2Kex} | \`ssh … openssl x509\` on the node, then \`openssl s_client -verify_return_error\` from here; nothing recorded | ${fixed(s)} | ${runs(samples.script)} | ${fixed(s / f)}× |`,
				`| \`parallel-ssh -i\`, ${ssh2Kex} | \`openssl x509\` on the node only: no handshake, nothing recorded | ${fixed(p)} | ${runs(samples.pssh)} | ${fixed(p / f)}× |`,
				`| \`ansible-playbook\` (bench/cert-scan.playbook.yml), forks ${concurrency}, pipelining, ControlPersist | \`x509_certificate_info\` on the node, \`get_certificate\` from the controller with the CA; nothing recorded | ${fixed(a)} | ${runs(samples.ansible)} | ${fixed(a / f, 1)}× |`,
				'',
				`The same scan with Ansible ÷ Flotilla: **${fixed(a / f, 1)}×** (aim: at least ${aimOverAnsible}×, ` +
					`${a / f >= aimOverAnsible ? 'met' : 'missed'}). A script per host doing the same work ÷ Flotilla: ` +
					`${fixed(s / f)}×; parallel-ssh, reading the file alone, ÷ Flotilla: ${fixed(p / f)}×.`,
				'',
				`CPU per Flotilla round, median: the console ${fixed(median(used.map((u) => u.consoleCpu)))} s, PostgreSQL ` +
					`${fixed(median(used.map((u) => u.postgresCpu)))} s; the console's event loop was busy ` +
					`${fixed(median(used.map((u) => u.eventLoop)) * 100, 0)}% of the run.`,
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
