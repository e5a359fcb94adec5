/**
 * The SSH layer against parallel-ssh, Ansible and scp on the same 50 testbed hosts, in one run: a short
 * command sequence on every host at two concurrencies, and a 512 MiB upload to one host. Run it with
 * `npm run bench:ssh`; bench/README.md says what each row measures and how to read the ratios.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type ConnectConfig } from 'ssh2';
import { connect } from '../src/lib/server/ssh/connection';
import { fingerprintOf } from '../src/lib/server/ssh/host-keys';
import { uploadFile } from '../src/lib/server/ssh/sftp';
import { sh, type ShellCommand } from '../src/lib/server/ssh/shell';
import { startTestbed, type Testbed, type TestHost } from '../tests/testbed/testbed.ts';
import {
	ansibleEnv,
	count,
	fixed,
	ssh2Kex,
	machine,
	markdownTable,
	measureRoundRobin,
	median,
	medianAndRuns,
	secondsSince,
	sha256Of,
	stopControlMasters,
	tool,
	publishSection,
	toolSetup,
	writeRandomFile,
	type ToolRow,
	type ToolSetup,
	type Variant
} from './common';
import { testbedTarget } from '../tests/support/testbed-nodes';

const command = 'npm run bench:ssh';
const sectionHeading = '## SSH layer';

const fleetSize = 50;
const firstHost = 150;
const concurrencies = [10, 50];
const rounds = 3;
const uploadBytes = 512 * 1024 * 1024;
const deadlineMs = 60_000;

/** What an update's status check runs on a node; `web` is the testbed's stand-in unit, started beforehand. */
const sequence: ShellCommand[] = [
	sh`hostname`,
	sh`uname -r`,
	sh`cat /etc/os-release | head -1`,
	sh`systemctl is-active web`,
	sh`df -h / | tail -1`
];
const joined = sequence.reduce((all, next) => sh`${all}; ${next}`);

/** One line of a result table; a variant's run yields one duration per row it feeds. */
interface Row extends ToolRow {
	concurrency: number | null;
	/** The Flotilla row this one's ratio is computed against. */
	baseline: Row | 'self';
}

/** Runs `work` on every host with at most `concurrency` hosts in progress, like pssh -p and ansible -f. */
async function eachHost(hosts: TestHost[], concurrency: number, work: (host: TestHost) => Promise<void>) {
	let next = 0;
	await Promise.all(
		Array.from({ length: Math.min(concurrency, hosts.length) }, async () => {
			while (next < hosts.length) await work(hosts[next++]!);
		})
	);
}

/**
 * Flotilla's own path: one verified connection per host, every command a separate exec on it.
 *
 * `noDelay` measures the change this benchmark suggests for connection.ts, applied from outside: ssh2
 * leaves Nagle's algorithm on, and every small request then waits out the peer's delayed ACK. Remove the
 * option once connect() sets TCP_NODELAY itself.
 */
function flotillaOnFleet(
	bed: Testbed,
	concurrency: number,
	commands: ShellCommand[],
	noDelay = false
): () => Promise<number[]> {
	return async () => {
		const connectClient = Client.prototype.connect;
		if (noDelay) {
			Client.prototype.connect = function (this: Client, config: ConnectConfig) {
				connectClient.call(this, config);
				return this.setNoDelay(true);
			};
		}
		try {
			return await flotillaRun(bed, concurrency, commands);
		} finally {
			Client.prototype.connect = connectClient;
		}
	};
}

async function flotillaRun(bed: Testbed, concurrency: number, commands: ShellCommand[]): Promise<number[]> {
	const start = performance.now();
	await eachHost(bed.hosts, concurrency, async (host) => {
		const conn = await connect(testbedTarget(bed, host));
		try {
			if (conn.fingerprint !== host.hostKeyFingerprint) throw new Error(`${host.name}: unverified host key`);
			for (const command of commands) {
				const result = await conn.exec(command, { deadlineMs });
				if (result.exitCode !== 0) throw new Error(`${host.name}: ${command.script} exited ${result.exitCode}`);
			}
		} finally {
			conn.close();
		}
	});
	return [secondsSince(start)];
}

/**
 * ssh2 without Flotilla's layer: the same verified key, the raw command on the channel, no `timeout`
 * wrapper, no in-band exit status. Not something the console may do (no deadline on the node); it shows
 * what the wrapper costs.
 */
function bareSsh2OnFleet(bed: Testbed, concurrency: number): () => Promise<number[]> {
	const open = (host: TestHost) =>
		new Promise<Client>((resolve, reject) => {
			const client = new Client();
			client.once('ready', () => resolve(client));
			client.on('error', reject);
			client.connect({
				host: host.address,
				port: host.port,
				username: host.user,
				privateKey: bed.clientPrivateKey,
				readyTimeout: 10_000,
				hostVerifier: (key: Buffer) => fingerprintOf(key) === host.hostKeyFingerprint
			});
		});
	const exec = (client: Client, script: string) =>
		new Promise<number | null>((resolve, reject) => {
			client.exec(script, (err, channel) => {
				if (err) return reject(err);
				let code: number | null = null;
				channel.on('exit', (c: number | null) => (code = c));
				channel.on('data', () => {});
				channel.stderr.on('data', () => {});
				channel.on('close', () => resolve(code));
			});
		});
	return async () => {
		const start = performance.now();
		await eachHost(bed.hosts, concurrency, async (host) => {
			const client = await open(host);
			try {
				for (const command of sequence) {
					const code = await exec(client, command.script);
					if (code !== 0) throw new Error(`${host.name}: ${command.script} exited ${code}`);
				}
			} finally {
				client.end();
			}
		});
		return [secondsSince(start)];
	};
}

/** What ssh2 negotiates with OpenSSH 9.2; OpenSSH's own client prefers sntrup761x25519 and chacha20-poly1305. */
const ssh2KexOption = ['-o', `KexAlgorithms=${ssh2Kex}`];
const ssh2Cipher = ['-c', 'aes128-gcm@openssh.com'];

function parallelSsh(
	setup: ToolSetup,
	concurrency: number,
	commands: ShellCommand[],
	extraOptions: string[] = []
): () => Promise<number[]> {
	return async () => {
		const start = performance.now();
		for (const command of commands) {
			const output = await tool('parallel-ssh', [
				'-p',
				String(concurrency),
				'-h',
				setup.hostsFile,
				'-l',
				'root',
				'-x',
				[...setup.sshOptions, ...extraOptions].join(' '),
				'-i',
				command.script
			]);
			const succeeded = count(output, /\[SUCCESS\]/);
			if (succeeded !== fleetSize) throw new Error(`parallel-ssh: ${succeeded} of ${fleetSize} succeeded\n${output}`);
		}
		return [secondsSince(start)];
	};
}

/**
 * Ad-hoc Ansible as its users run it, ControlPersist included: the 5 separate runs reuse each host's
 * master connection, as tasks in a playbook would. Each measured run starts from a fresh control
 * directory, so no run inherits connections from the one before, and ends its masters when done.
 */
function ansible(setup: ToolSetup, concurrency: number, commands: ShellCommand[]): () => Promise<number[]> {
	let runs = 0;
	return async () => {
		const controlDir = join(setup.dir, `cp-${concurrency}-${commands.length}-${++runs}`);
		await mkdir(controlDir);
		const env = ansibleEnv(controlDir);
		try {
			const start = performance.now();
			for (const command of commands) {
				const output = await tool(
					'ansible',
					['all', '-i', setup.inventory, '-f', String(concurrency), '-m', 'shell', '-a', command.script],
					env
				);
				const succeeded = count(output, /\| CHANGED \| rc=0 >>/);
				if (succeeded !== fleetSize) throw new Error(`ansible: ${succeeded} of ${fleetSize} succeeded\n${output}`);
			}
			return [secondsSince(start)];
		} finally {
			await stopControlMasters(controlDir);
		}
	};
}

function fleetVariants(setup: ToolSetup): Variant<Row>[] {
	const variants: Variant<Row>[] = [];
	for (const concurrency of concurrencies) {
		const ours: Row = {
			tool: 'Flotilla',
			how: 'one connection per host, 5 execs',
			concurrency,
			baseline: 'self',
			samples: []
		};
		const row = (tool: string, how: string): Row => ({ tool, how, concurrency, baseline: ours, samples: [] });
		const { bed } = setup;
		variants.push(
			{ label: `flotilla c=${concurrency}`, rows: [ours], run: flotillaOnFleet(bed, concurrency, sequence) },
			{
				label: `parallel-ssh joined c=${concurrency}`,
				rows: [
					row(
						'parallel-ssh',
						"one ssh per host, the 5 commands joined with ;, OpenSSH's default key exchange sntrup761x25519"
					)
				],
				run: parallelSsh(setup, concurrency, [joined])
			},
			{
				label: `parallel-ssh joined curve25519 c=${concurrency}`,
				rows: [
					row('parallel-ssh', "one ssh per host, the 5 commands joined with ;, ssh2's key exchange curve25519-sha256")
				],
				run: parallelSsh(setup, concurrency, [joined], ssh2KexOption)
			},
			{
				label: `parallel-ssh 5 runs c=${concurrency}`,
				rows: [row('parallel-ssh', '5 invocations, one ssh per host and command, sntrup761x25519')],
				run: parallelSsh(setup, concurrency, sequence)
			},
			{
				label: `parallel-ssh 5 runs curve25519 c=${concurrency}`,
				rows: [row('parallel-ssh', '5 invocations, one ssh per host and command, curve25519-sha256')],
				run: parallelSsh(setup, concurrency, sequence, ssh2KexOption)
			},
			{
				label: `ansible joined c=${concurrency}`,
				rows: [row('ansible', 'one ad-hoc shell run, the 5 commands joined with ;')],
				run: ansible(setup, concurrency, [joined])
			},
			{
				label: `ansible 5 runs c=${concurrency}`,
				rows: [row('ansible', "5 ad-hoc shell runs, ControlPersist reusing each host's connection")],
				run: ansible(setup, concurrency, sequence)
			},
			{
				label: `flotilla joined c=${concurrency}`,
				rows: [row('Flotilla (diagnostic)', 'one connection per host, the 5 commands joined in 1 exec')],
				run: flotillaOnFleet(bed, concurrency, [joined])
			},
			{
				label: `flotilla connect only c=${concurrency}`,
				rows: [row('Flotilla (diagnostic)', 'connect, verify the host key, close; no command')],
				run: flotillaOnFleet(bed, concurrency, [])
			},
			{
				label: `bare ssh2 c=${concurrency}`,
				rows: [
					row(
						'ssh2 without our layer (diagnostic)',
						'one connection per host, 5 raw execs, no wrapper, Nagle on as in ours'
					)
				],
				run: bareSsh2OnFleet(bed, concurrency)
			},
			{
				label: `flotilla nodelay c=${concurrency}`,
				rows: [row('Flotilla + TCP_NODELAY (diagnostic)', 'one connection per host, 5 execs, Nagle off on the socket')],
				run: flotillaOnFleet(bed, concurrency, sequence, true)
			}
		);
	}
	return variants;
}

function uploadVariants(setup: ToolSetup, localFile: string): Variant<Row>[] {
	const host = setup.bed.hosts[0]!;
	const remote = (name: string) => ({ path: `/opt/${name}`, onHost: join(host.root, 'opt', name) });
	const target = `root@${host.address}`;
	const scp = (extra: string[], name: string) => async () => {
		const { path, onHost } = remote(name);
		await rm(onHost, { force: true });
		const start = performance.now();
		await tool('scp', ['-q', ...setup.sshOptions, ...extra, localFile, `${target}:${path}`]);
		return secondsSince(start);
	};

	const full: Row = {
		tool: 'Flotilla',
		how: 'uploadFile: connect, SFTP upload, remote sha256sum checked against ours',
		concurrency: null,
		baseline: 'self',
		samples: []
	};
	const transfer: Row = {
		tool: 'Flotilla',
		how: 'the same uploadFile, timed until its progress reached the total (before the checksum)',
		concurrency: null,
		baseline: 'self',
		samples: []
	};
	const scpRow = (how: string, baseline: Row): Row => ({ tool: 'scp', how, concurrency: null, baseline, samples: [] });
	/**
	 * ssh2's own parallel upload over Flotilla's connection, without uploadFile's local sha256 alongside:
	 * once with uploadFile's 32 KiB writes, once with the largest write ssh2 sends to OpenSSH in one
	 * request, to show what the hashing and the write size cost.
	 */
	const fastPut = (chunkSize: number, concurrency: number, name: string) => async () => {
		const { path, onHost } = remote(name);
		await rm(onHost, { force: true });
		const start = performance.now();
		const conn = await connect(testbedTarget(setup.bed, host));
		try {
			const sftp = await conn.sftp();
			await new Promise<void>((resolve, reject) =>
				sftp.fastPut(localFile, path, { chunkSize, concurrency }, (err) => (err ? reject(err) : resolve()))
			);
			sftp.end();
		} finally {
			conn.close();
		}
		return secondsSince(start);
	};
	const fastPutRow = (how: string): Row => ({
		tool: 'ssh2 fastPut (diagnostic)',
		how,
		concurrency: null,
		baseline: transfer,
		samples: []
	});
	const scpDefault = scp([], 'flotilla-bench-scp.bin');
	const scpAsSsh2 = scp([...ssh2Cipher, ...ssh2KexOption], 'flotilla-bench-scp-ssh2.bin');

	return [
		{
			label: 'flotilla uploadFile',
			rows: [full, transfer],
			async run() {
				const { path, onHost } = remote('flotilla-bench-upload.bin');
				await rm(onHost, { force: true });
				const start = performance.now();
				let transferred: number | undefined;
				const conn = await connect(testbedTarget(setup.bed, host));
				try {
					await uploadFile(conn, localFile, path, {
						checksumDeadlineMs: 300_000,
						onProgress: ({ bytes, total }) => {
							if (bytes === total) transferred ??= secondsSince(start);
						}
					});
				} finally {
					conn.close();
				}
				const total = secondsSince(start);
				if (transferred === undefined) throw new Error('uploadFile never reported the whole file sent');
				return [total, transferred];
			}
		},
		{
			label: 'scp',
			rows: [scpRow('scp (SFTP protocol), default algorithms: chacha20-poly1305, sntrup761x25519', transfer)],
			run: async () => [await scpDefault()]
		},
		{
			label: 'scp with ssh2 algorithms',
			rows: [
				scpRow('scp with what ssh2 negotiates: -c aes128-gcm@openssh.com, KexAlgorithms=curve25519-sha256', transfer)
			],
			run: async () => [await scpAsSsh2()]
		},
		{
			label: 'scp + sha256sum',
			rows: [scpRow('scp, then ssh sha256sum on the host, local sha256 computed alongside', full)],
			async run() {
				const { path, onHost } = remote('flotilla-bench-scp-sum.bin');
				await rm(onHost, { force: true });
				const start = performance.now();
				const [ours, theirs] = await Promise.all([
					sha256Of(localFile),
					(async () => {
						await tool('scp', ['-q', ...setup.sshOptions, localFile, `${target}:${path}`]);
						return tool('ssh', [...setup.sshOptions, target, sh`sha256sum -- ${path}`.script]);
					})()
				]);
				if (!theirs.startsWith(ours)) throw new Error(`scp: sha256 mismatch (${theirs.trim()} vs ${ours})`);
				return [secondsSince(start)];
			}
		},
		{
			label: 'ssh2 fastPut 32 KiB',
			rows: [fastPutRow('connect, 32 KiB writes, 64 in flight as in uploadFile; no sha256 anywhere')],
			run: async () => [await fastPut(32 * 1024, 64, 'flotilla-bench-fastput-32k.bin')()]
		},
		{
			label: 'ssh2 fastPut 254 KiB',
			rows: [fastPutRow("connect, 254 KiB writes (ssh2's limit for OpenSSH), 16 in flight; no sha256 anywhere")],
			run: async () => [await fastPut(254 * 1024, 16, 'flotilla-bench-fastput-254k.bin')()]
		}
	];
}

const ratio = (row: Row) => (row.baseline === 'self' ? 1 : median(row.samples) / median(row.baseline.samples));

function fleetTable(rows: Row[]): string {
	return markdownTable(
		[
			{ heading: 'tool' },
			{ heading: 'how' },
			{ heading: 'concurrency', right: true },
			{ heading: 'median (s)', right: true },
			{ heading: 'runs (s)' },
			{ heading: 'ratio to ours', right: true }
		],
		rows.map((row) => [row.tool, row.how, String(row.concurrency), ...medianAndRuns(row.samples), fixed(ratio(row))])
	);
}

function uploadTable(rows: Row[]): string {
	const mib = uploadBytes / (1024 * 1024);
	return markdownTable(
		[
			{ heading: 'tool' },
			{ heading: 'what is timed' },
			{ heading: 'median (s)', right: true },
			{ heading: 'runs (s)' },
			{ heading: 'MiB/s', right: true },
			{ heading: 'ratio to ours', right: true },
			{ heading: 'compared with' }
		],
		rows.map((row) => {
			const against = row.baseline === 'self' ? '—' : row.baseline === rows[0] ? 'uploadFile' : 'transfer only';
			return [
				row.tool,
				row.how,
				...medianAndRuns(row.samples),
				fixed(mib / median(row.samples)),
				fixed(ratio(row)),
				against
			];
		})
	);
}

/** Plain sentences for the rows that matter most: is Flotilla slower than parallel-ssh, and by how much. */
function verdicts(rows: Row[]): string[] {
	return rows
		.filter((row) => row.tool === 'parallel-ssh' || row.tool === 'ansible')
		.map((row) => {
			const r = ratio(row);
			const ours = row.baseline === 'self' ? row : row.baseline;
			const verdict =
				r < 1
					? `Flotilla is **slower**: ${fixed(median(ours.samples))} s against ${fixed(median(row.samples))} s, ${fixed(1 / r)}× as long`
					: `Flotilla is faster: ${fixed(median(ours.samples))} s against ${fixed(median(row.samples))} s, ${fixed(r)}× quicker`;
			return `- Concurrency ${row.concurrency}, ${row.tool} — ${row.how}: ${verdict}.`;
		});
}

export async function benchmarkSsh(log: (line: string) => void = console.log): Promise<string> {
	const started = new Date();
	const loadBefore = loadavg();
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bench-ssh-'));
	let bed: Testbed | undefined;
	try {
		log(`starting ${fleetSize} testbed hosts from 127.0.1.${firstHost}`);
		bed = await startTestbed({ hosts: fleetSize, firstHost });
		await Promise.all(
			bed.hosts.map((host) => writeFile(join(host.root, 'var/lib/flotilla-testbed/units/web'), 'active\n'))
		);
		const setup = await toolSetup(bed, dir);

		log(`5-command sequence on ${fleetSize} hosts at concurrency ${concurrencies.join(' and ')}`);
		const fleet = fleetVariants(setup);
		await measureRoundRobin(fleet, rounds, log);

		log(`upload of ${uploadBytes / 2 ** 20} MiB to ${bed.hosts[0]!.name}`);
		const localFile = join(dir, 'upload.bin');
		await writeRandomFile(localFile, uploadBytes);
		const upload = uploadVariants(setup, localFile);
		await measureRoundRobin(upload, rounds, log);

		const fleetRows = fleet.flatMap((v) => v.rows);
		const mainRows = fleetRows.filter((row) => !/diagnostic/.test(row.tool));
		const diagnosticRows = fleetRows.filter((row) => /diagnostic/.test(row.tool));
		const byConcurrency = (rows: Row[]) => concurrencies.flatMap((c) => rows.filter((row) => row.concurrency === c));
		const loadAfter = loadavg();
		const section = [
			sectionHeading,
			'',
			`Produced by \`${command}\` (bench/ssh.ts) on ${started.toISOString()}: ${fleetSize} testbed hosts (real OpenSSH sshd on 127.0.1.${firstHost}–${firstHost + fleetSize - 1}), every tool on the same hosts in one run, one warm-up run of each row, then ${rounds} measured runs taken round-robin; the median is shown.`,
			'',
			...(await machine()),
			`- Load average (1 min) ${fixed(loadBefore[0]!)} before the run, ${fixed(loadAfter[0]!)} after`,
			'',
			`### A 5-command sequence on ${fleetSize} hosts`,
			'',
			`Commands: ${sequence.map((c) => `\`${c.script}\``).join(', ')}. Every host must answer every command with exit status 0; host keys are verified against the testbed's (StrictHostKeyChecking=yes, known_hosts; Flotilla against the pinned fingerprint). Ratio to ours: the row's median ÷ Flotilla's (one connection per host, 5 execs) at the same concurrency. Above 1 the row took longer than Flotilla; below 1 it was faster.`,
			'',
			fleetTable(byConcurrency(mainRows)),
			'',
			...verdicts(byConcurrency(mainRows)),
			'',
			'Diagnostic rows, measured in the same rounds, to find where Flotilla spends its time:',
			'',
			fleetTable(byConcurrency(diagnosticRows)),
			'',
			`### Upload of ${uploadBytes / 2 ** 20} MiB (random data) to one host`,
			'',
			'Each run deletes the remote file first, and every timing includes connecting and authenticating. Ratio to ours: the row ÷ the Flotilla row it is compared with (scp alone against the transfer only; scp plus a remote sha256sum against the whole uploadFile).',
			'',
			uploadTable(upload.flatMap((v) => v.rows)),
			''
		];
		return await publishSection(sectionHeading, section, log);
	} finally {
		await bed?.stop();
		await rm(dir, { recursive: true, force: true });
	}
}
