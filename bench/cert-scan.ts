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
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { systemActor } from '../src/lib/server/audit';
import { listInventory } from '../src/lib/server/certs/inventory';
import { startScan } from '../src/lib/server/certs/scan';
import { certifyTestbedRole } from '../tests/support/testbed-nodes';
import { hostPaths, startTestbed } from '../tests/testbed/testbed.ts';
import { startBenchConsole, timeRun } from './console';
import {
	count,
	cpuSummary,
	fixed,
	machine,
	median,
	medianAndRuns,
	parallelSshBase,
	publishSection,
	runPlaybook,
	ssh2Kex,
	startPostgres,
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
		await certifyTestbedRole(bed);
		const setup = await toolSetup(bed, dir);

		const used: Usage[] = [];
		const flotilla = async () => {
			const { seconds, usage } = await timeRun(pg.postmasterPid, async () => (await startScan(systemActor)).runId);
			used.push(usage);
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
			const vars = { cert_path: hostPaths.tlsCert, port: String(port), ca_cert: bed.caCertPath };
			const { output, seconds } = await runPlaybook(setup, playbook, vars, concurrency);
			const ok = count(output, /: ok=2 .* failed=0 /g);
			if (ok !== fleetSize) throw new Error(`ansible-playbook: ${ok} of ${fleetSize} hosts ok\n${output.slice(-3000)}`);
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
		const cells = (xs: number[]) => medianAndRuns(xs).join(' | ');
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
				`| Flotilla \`cert-scan\` | the file read over SSH and parsed; the endpoint's certificate fetched by a TLS handshake from the console, chain verified; both recorded in the inventory | ${cells(samples.flotilla)} | 1 |`,
				`| a script per host (\`xargs -P ${concurrency}\`), ${ssh2Kex} | \`ssh … openssl x509\` on the node, then \`openssl s_client -verify_return_error\` from here; nothing recorded | ${cells(samples.script)} | ${fixed(s / f)}× |`,
				`| \`parallel-ssh -i\`, ${ssh2Kex} | \`openssl x509\` on the node only: no handshake, nothing recorded | ${cells(samples.pssh)} | ${fixed(p / f)}× |`,
				`| \`ansible-playbook\` (bench/cert-scan.playbook.yml), forks ${concurrency}, pipelining, ControlPersist | \`x509_certificate_info\` on the node, \`get_certificate\` from the controller with the CA; nothing recorded | ${cells(samples.ansible)} | ${fixed(a / f, 1)}× |`,
				'',
				`The same scan with Ansible ÷ Flotilla: **${fixed(a / f, 1)}×** (aim: at least ${aimOverAnsible}×, ` +
					`${a / f >= aimOverAnsible ? 'met' : 'missed'}). A script per host doing the same work ÷ Flotilla: ` +
					`${fixed(s / f)}×; parallel-ssh, reading the file alone, ÷ Flotilla: ${fixed(p / f)}×.`,
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
