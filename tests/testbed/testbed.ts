/**
 * The testbed: a fleet of real OpenSSH servers on loopback, one per test host, for integration tests,
 * benchmarks and `npm run testbed`. See docs/development.md, "The testbed and simulated nodes".
 *
 * Each host is Debian's own `/usr/sbin/sshd` listening on `127.0.1.N:22`, started as
 *
 *   setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
 *     sh <host>/supervise.sh <host>
 *
 * - The private mount namespace lets host/supervise.sh bind the host's own directories over /opt,
 *   /etc/flotilla, /etc/flotilla-testbed, /var/lib/flotilla-testbed, /boot, /root and /run, so what one host
 *   writes there no other host (and not the real machine) sees. Those mounts exist only inside the namespace: they vanish
 *   with its last process, so nothing ever needs unmounting.
 * - The pid namespace makes the supervisor pid 1 of the host: killing it kills every process of the host at
 *   once (sshd, every session, a hung stand-in), and the `reboot` stand-in's `kill -1` reaches this host
 *   only. Its own /proc keeps `$$`, `ps` and /proc/<pid> consistent inside the host.
 * - `--pdeathsig KILL` and `--kill-child` chain the host's life to the Node process that started it (more
 *   precisely its spawning thread), so a crashed test run leaves no sshd behind.
 *
 * Stand-ins for what a sandbox cannot do (`systemctl`, `apt-get`, `apt`, `apt-mark`, `needrestart`, `reboot`) live in each host's
 * /opt/flotilla-testbed/bin, first on sshd's PATH; they log every call and obey the fault files that
 * `setFault` writes. The scripts are in ./host and are copied into every host, so a test may edit one host's.
 *
 * What the update flows work on is real too:
 * - code: one bare git origin per role (./repos.ts) below `dir`, which every namespace sees at the same path;
 *   each host has a clone of every role at /opt/<role>.
 * - certificates: a testbed CA and per host a leaf for its name and address (./certs.ts) at
 *   /etc/flotilla/tls, served by `openssl s_server` on <address>:8443, which the supervisor runs and
 *   restarts (`systemctl reload tls-endpoint` makes it pick up the files on disk).
 * - A/B slots: /boot/flotilla, managed by the appliance's own helper (appliance/flotilla-slot, installed at
 *   /opt/flotilla/bin/flotilla-slot), whose boot logic the supervisor runs at every reboot.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { access, chmod, cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { nodePaths } from '../../src/lib/server/sim/paths.ts';
import { createCertificateAuthority, issueCertificate, type IssuedCertificate } from './certs.ts';
import { addCommit, checkedOutCommit, cloneOrigin, createOrigin, originCommits, type CommitChange } from './repos.ts';

const run = promisify(execFile);

export interface TestHost {
	name: string;
	address: string;
	port: number;
	user: 'root';
	/** The host's directory on the real filesystem; `<root>/opt` is the host's /opt, and so on. */
	root: string;
	/** `SHA256:<base64 without padding>`, as `ssh-keygen -lf` prints it for the ed25519 host key. */
	hostKeyFingerprint: string;
	/** Where the host's TLS listener serves its certificate (on `address`). */
	tlsPort: number;
}

/** One package on a test host: installed = candidate means up to date. */
export interface TestPackage {
	name: string;
	arch: string;
	installed: string;
	candidate: string;
	/** The suites offering the candidate, e.g. `bookworm-security`. */
	suites: string[];
}

export type AptRule =
	| { upgrading: string; pulls: { name: string; arch: string; version: string; suite: string } }
	| { upgrading: string; removes: string }
	| { upgrading: string; kept: true };

/** Paths on every host (inside its namespace): the same as on simulated and real nodes. */
export const hostPaths = nodePaths;

/** The A/B slot state as flotilla-slot keeps it (see appliance/flotilla-slot). */
export interface SlotState {
	active: 'a' | 'b';
	next: 'a' | 'b';
	good: 'a' | 'b';
	tries: number;
	boots: number;
}

export const faults = ['fail-step', 'hang', 'slow-output', 'drop-connection', 'fail-health', 'fail-boot'] as const;
/**
 * - `fail-step`, `hang`, `drop-connection`: the value names the stand-ins hit (`systemctl`, `apt-get`, `apt`,
 *   `reboot`), one per line; without a value every stand-in is hit. They exit 1 with a message on stderr,
 *   sleep forever, or kill the sshd processes of their own session.
 * - `slow-output`: every stand-in first prints 20 lines, 0.2 s apart.
 * - `fail-health`: `systemctl is-active` (and `status`) say `failed` and exit 3.
 * - `fail-boot`: the value names the A/B slots (`a`, `b`) whose boot fails, one per line; without a value every
 *   boot fails. A failed boot of a slot that is not committed is retried, and after 3 the slot helper falls
 *   back to the good slot; when the good slot fails too, the host stays down until `clearFaults` and
 *   `startHost`.
 */
export type Fault = (typeof faults)[number];

export interface Testbed {
	/** Everything lives below this temporary folder, which `stop()` removes. */
	dir: string;
	hosts: TestHost[];
	/** OpenSSH ed25519 private key without passphrase, authorised for root on every host. */
	clientPrivateKey: string;
	clientPrivateKeyPath: string;
	/** known_hosts for every host's current key (kept up to date by `changeHostKey`). */
	knownHostsPath: string;
	setFault(host: TestHost, fault: Fault, value?: string): Promise<void>;
	clearFaults(host: TestHost): Promise<void>;
	/** The host goes down as if switched off: every session dies, new connections are refused. */
	stopHost(host: TestHost): Promise<void>;
	/** Starts a stopped (or failed-to-boot) host; resolves once sshd answers. No boot hook runs. */
	startHost(host: TestHost): Promise<void>;
	/** New host key and sshd restarted (sessions drop); returns the new fingerprint. */
	changeHostKey(host: TestHost): Promise<string>;
	/**
	 * Lines `<epoch-ms> <name> <args...>` the stand-ins appended, oldest first, and `<epoch-ms> (booted)` where
	 * the host finished a boot after a reboot (sshd starts right after).
	 */
	commandLog(host: TestHost): Promise<string[]>;
	/** The roles every host has a checkout of (at `hostPaths.repo(role)`), and each role's bare origin. */
	roles: string[];
	origins: Record<string, string>;
	/** Commits a change (by default the app's next version) to the role's origin; returns its sha. */
	addCommit(role: string, change?: CommitChange): Promise<string>;
	/** The origin's commits on main, oldest first. */
	originCommits(role: string): Promise<string[]>;
	/** The commit checked out in the host's /opt/<role>, read from the filesystem, not over SSH. */
	checkedOutCommit(host: TestHost, role: string): Promise<string>;
	/** The testbed CA's certificate (PEM file) that issued every host's certificate. */
	caCertPath: string;
	/** A new certificate for the host from the testbed CA, not installed anywhere. */
	issueCertificate(host: TestHost, days?: number): Promise<IssuedCertificate>;
	/** The certificate the host's TLS listener serves now, from a real TLS handshake. */
	servedCertificate(host: TestHost): Promise<{ fingerprint: string; validTo: Date; subjectAltName: string }>;
	/**
	 * The host's packages as its apt stand-in keeps them (host/bin/apt-get): what is installed and what the
	 * archive offers. `setPackages` replaces them (holds, restart state and lock stay as they are).
	 */
	setPackages(host: TestHost, packages: TestPackage[]): Promise<void>;
	packages(host: TestHost): Promise<TestPackage[]>;
	/**
	 * What apt's resolver does besides upgrading the packages it is asked for (host/bin/apt-get): a new package
	 * pulled in, an installed one removed, an upgrade kept back (phased). An empty list clears the rules.
	 */
	setAptResolver(host: TestHost, rules: AptRule[]): Promise<void>;
	/** Writes /var/run/reboot-required (and .pkgs) on the host, as a package's postinst does. */
	requireReboot(host: TestHost, packages: string[]): Promise<void>;
	/** The host's A/B slot state, read from the filesystem, not over SSH. */
	slotState(host: TestHost): Promise<SlotState>;
	/** Kills every host's processes and removes `dir`. Idempotent. */
	stop(): Promise<void>;
}

const hostTemplate = new URL('./host/', import.meta.url).pathname;
/** Real-filesystem paths each host's namespace mounts its own directory over. */
const mountedPaths = [
	'/opt',
	'/etc/flotilla',
	'/etc/flotilla-testbed',
	'/var/lib/flotilla-testbed',
	'/boot',
	'/root',
	'/run'
];
const standinPath = '/opt/flotilla-testbed/bin:/opt/flotilla/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';
const slotHelperSource = new URL('../../appliance/flotilla-slot', import.meta.url).pathname;
const tlsPort = 8443;
const certificateDays = 90;
const readyTimeoutMs = 10_000;
const HOSTS_STARTING_AT_ONCE = 10;

export async function startTestbed(opts: { hosts: number; firstHost?: number; roles?: string[] }): Promise<Testbed> {
	const firstHost = opts.firstHost ?? 10;
	const roles = opts.roles ?? ['backend', 'frontend'];
	for (const role of roles) {
		if (!/^[a-z][a-z0-9-]{0,30}$/.test(role)) throw new Error(`Not a role name: ${JSON.stringify(role)}`);
	}
	const { hosts: count } = opts;
	if (
		!Number.isInteger(count) ||
		!Number.isInteger(firstHost) ||
		count < 1 ||
		firstHost < 1 ||
		firstHost + count > 255
	) {
		throw new Error(`A testbed needs 1 or more hosts within 127.0.1.1-254 (asked: ${count} from .${firstHost})`);
	}
	// Bind mounts need their mount points; on the real machine they stay empty directories.
	await Promise.all(mountedPaths.map((path) => mkdir(path, { recursive: true })));

	const dir = await mkdtemp(join(tmpdir(), 'flotilla-testbed-'));
	const running = new Map<TestHost, HostProcess>();
	let stopping: Promise<void> | undefined;
	try {
		const clientPrivateKeyPath = join(dir, 'client', 'id_ed25519');
		await mkdir(join(dir, 'client'));
		await generateKey(clientPrivateKeyPath, 'flotilla-testbed-client');
		const clientPublicKey = await readFile(`${clientPrivateKeyPath}.pub`, 'utf8');
		await mkdir(join(dir, 'ca'));
		const ca = await createCertificateAuthority(join(dir, 'ca'));
		const origins = new Map(
			await Promise.all(roles.map(async (role) => [role, await createOrigin(dir, role)] as const))
		);
		const originOf = (role: string) => {
			const origin = origins.get(role);
			if (!origin) throw new Error(`The testbed has no role ${role} (roles: ${roles.join(', ')})`);
			return origin;
		};

		const hosts = await Promise.all(
			Array.from({ length: count }, async (_, i) => {
				const host = await createHost(dir, i + 1, firstHost + i, clientPublicKey);
				const tls = join(host.root, 'etc/flotilla/tls');
				const issued = await issueCertificate(ca, host.name, host.address, certificateDays);
				await writeFile(join(tls, 'server.crt'), issued.cert);
				await writeFile(join(tls, 'server.key'), issued.key, { mode: 0o600 });
				await cp(ca.certPath, join(tls, 'ca.crt'));
				for (const origin of origins.values()) await cloneOrigin(origin, join(host.root, 'opt', origin.role));
				return host;
			})
		);
		const knownHostsPath = join(dir, 'known_hosts');
		writeKnownHosts(knownHostsPath, hosts);

		const testbed: Testbed = {
			dir,
			hosts,
			clientPrivateKey: await readFile(clientPrivateKeyPath, 'utf8'),
			clientPrivateKeyPath,
			knownHostsPath,
			roles,
			origins: Object.fromEntries([...origins].map(([role, origin]) => [role, origin.path])),
			addCommit: (role, change) => addCommit(originOf(role), change),
			originCommits: (role) => originCommits(originOf(role)),
			checkedOutCommit: (host, role) => checkedOutCommit(join(host.root, 'opt', originOf(role).role)),
			caCertPath: ca.certPath,
			issueCertificate: (host, days = certificateDays) => issueCertificate(ca, host.name, host.address, days),
			servedCertificate,
			async setPackages(host, packages) {
				const lines = packages.map((p) => `${p.name} ${p.arch} ${p.installed} ${p.candidate} ${p.suites.join(',')}\n`);
				await writeFile(join(host.root, 'var/lib/flotilla-testbed/apt/packages'), lines.join(''));
			},
			async setAptResolver(host, rules) {
				const lines = rules.map((r) =>
					'pulls' in r
						? `${r.upgrading} pulls ${r.pulls.name} ${r.pulls.arch} ${r.pulls.version} ${r.pulls.suite}\n`
						: 'removes' in r
							? `${r.upgrading} removes ${r.removes}\n`
							: `${r.upgrading} kept\n`
				);
				await writeFile(join(host.root, 'var/lib/flotilla-testbed/apt/resolver'), lines.join(''));
			},
			async packages(host) {
				const text = await readFile(join(host.root, 'var/lib/flotilla-testbed/apt/packages'), 'utf8').catch(() => '');
				return text
					.split('\n')
					.filter(Boolean)
					.map((line) => {
						const [name, arch, installed, candidate, suites] = line.split(' ') as string[];
						return {
							name: name!,
							arch: arch!,
							installed: installed!,
							candidate: candidate!,
							suites: suites!.split(',')
						};
					});
			},
			async requireReboot(host, packages) {
				await writeFile(join(host.root, 'run/reboot-required'), '*** System restart required ***\n');
				await writeFile(join(host.root, 'run/reboot-required.pkgs'), packages.map((p) => `${p}\n`).join(''));
			},
			async slotState(host) {
				const read = (fact: string) => readFile(join(host.root, 'boot/flotilla', fact), 'utf8').then((s) => s.trim());
				const [active, next, good, tries, boots] = await Promise.all(
					['active', 'next', 'good', 'tries', 'boots'].map(read)
				);
				return {
					active: active as SlotState['active'],
					next: next as SlotState['next'],
					good: good as SlotState['good'],
					tries: Number(tries),
					boots: Number(boots)
				};
			},
			async setFault(host, fault, value) {
				if (!faults.includes(fault)) throw new Error(`Unknown fault ${fault}`);
				await writeFile(join(host.root, 'etc/flotilla-testbed/faults', fault), value ? `${value}\n` : '');
			},
			async clearFaults(host) {
				await rm(join(host.root, 'etc/flotilla-testbed/faults'), { recursive: true, force: true });
				await mkdir(join(host.root, 'etc/flotilla-testbed/faults'));
			},
			async stopHost(host) {
				const hostProcess = running.get(host);
				if (hostProcess) await killHost(hostProcess);
			},
			async startHost(host) {
				if (stopping) throw new Error('The testbed is stopped');
				if (running.has(host)) return;
				const hostProcess = launchHost(host);
				running.set(host, hostProcess);
				// A host that goes down on its own (fail-boot, sshd gone) can be started again.
				void hostProcess.exited.then(() => {
					if (running.get(host) === hostProcess) running.delete(host);
				});
				await waitUntilListening(host, hostProcess);
			},
			async changeHostKey(host) {
				await testbed.stopHost(host);
				const keyPath = join(host.root, 'etc/ssh/ssh_host_ed25519_key');
				// Generated beside and renamed over, so writeKnownHosts never finds a host without a key.
				await generateKey(`${keyPath}.new`, host.name);
				await rename(`${keyPath}.new`, keyPath);
				await rename(`${keyPath}.new.pub`, `${keyPath}.pub`);
				host.hostKeyFingerprint = await fingerprintOf(`${keyPath}.pub`);
				writeKnownHosts(knownHostsPath, hosts);
				await testbed.startHost(host);
				return host.hostKeyFingerprint;
			},
			async commandLog(host) {
				const log = await readFile(join(host.root, 'var/lib/flotilla-testbed/commands.log'), 'utf8').catch(
					(error: NodeJS.ErrnoException) => {
						if (error.code === 'ENOENT') return '';
						throw error;
					}
				);
				return log.split('\n').filter((line) => line !== '');
			},
			stop() {
				stopping ??= (async () => {
					await Promise.all([...running.values()].map(killHost));
					await rm(dir, { recursive: true, force: true });
				})();
				return stopping;
			}
		};
		// A few at a time: a hundred supervisors, sshds and TLS listeners starting at once on 2 CPUs left some
		// not listening within readyTimeoutMs (bench:system-scan's 100 hosts failed twice in a row on one host).
		const queue = [...hosts];
		await Promise.all(
			Array.from({ length: HOSTS_STARTING_AT_ONCE }, async () => {
				for (let host = queue.shift(); host; host = queue.shift()) await testbed.startHost(host);
			})
		);
		return testbed;
	} catch (error) {
		await Promise.all([...running.values()].map(killHost));
		await rm(dir, { recursive: true, force: true });
		throw error;
	}
}

interface HostProcess {
	/** The `unshare` process; its child is the host's pid 1. */
	child: ChildProcess;
	exited: Promise<void>;
	logPath: string;
	pidPath: string;
}

async function createHost(dir: string, index: number, lastOctet: number, clientPublicKey: string): Promise<TestHost> {
	const name = `host${String(index).padStart(2, '0')}`;
	const root = join(dir, 'hosts', name);
	const address = `127.0.1.${lastOctet}`;
	for (const path of [
		'etc/ssh',
		'etc/flotilla/health.d',
		'etc/flotilla-testbed/faults',
		'etc/flotilla/tls',
		'var/lib/flotilla-testbed/units',
		'var/lib/flotilla-testbed/apt',
		'var/lib/flotilla-testbed/www',
		'boot',
		'opt/flotilla/bin',
		'root/.ssh',
		'run'
	]) {
		await mkdir(join(root, path), { recursive: true });
	}
	await cp(join(hostTemplate, 'bin'), join(root, 'opt/flotilla-testbed/bin'), {
		recursive: true,
		verbatimSymlinks: true
	});
	await cp(join(hostTemplate, 'lib'), join(root, 'opt/flotilla-testbed/lib'), { recursive: true });
	await cp(join(hostTemplate, 'hooks'), join(root, 'opt/flotilla-testbed/hooks'), { recursive: true });
	for (const script of [
		'bin/systemctl',
		'bin/apt-get',
		'bin/apt-mark',
		'bin/needrestart',
		'bin/reboot',
		'hooks/tls-endpoint'
	]) {
		await chmod(join(root, 'opt/flotilla-testbed', script), 0o755);
	}
	await cp(join(hostTemplate, 'supervise.sh'), join(root, 'supervise.sh'));
	await writeFile(join(root, 'var/lib/flotilla-testbed/boot-count'), '0\n');
	await writeFile(join(root, 'etc/flotilla-testbed/address'), `${address}\n`);
	// Both units run from the first boot: the TLS listener is up, and the appliance passes its health gate.
	for (const unit of [hostPaths.tlsUnit, 'appliance']) {
		await writeFile(join(root, 'var/lib/flotilla-testbed/units', unit), 'active\n');
	}
	await writeFile(join(root, 'var/lib/flotilla-testbed/www/health'), 'ok\n');
	await installSlots(root);
	await writeFile(join(root, 'root/.ssh/authorized_keys'), clientPublicKey, { mode: 0o600 });
	// bash run by sshd reads ~/.bashrc even for `ssh host command`; an empty one keeps that a no-op. A login
	// shell's /etc/profile resets PATH, so ~/.profile puts the stand-ins first again.
	await writeFile(join(root, 'root/.bashrc'), '');
	await writeFile(join(root, 'root/.profile'), `PATH=${standinPath}\n`);

	const keyPath = join(root, 'etc/ssh/ssh_host_ed25519_key');
	await generateKey(keyPath, name);
	await writeFile(
		join(root, 'etc/ssh/sshd_config'),
		[
			`# ${name} of a Flotilla testbed (tests/testbed/testbed.ts)`,
			`ListenAddress ${address}:22`,
			`HostKey ${keyPath}`,
			// Not the shared /run/sshd.pid; waitUntilListening watches for it.
			`PidFile ${join(root, 'sshd.pid')}`,
			'PermitRootLogin prohibit-password',
			'PasswordAuthentication no',
			'KbdInteractiveAuthentication no',
			'UsePAM no',
			// File modes in the testbed follow the checkout and the umask, not a real host's discipline.
			'StrictModes no',
			'MaxSessions 10',
			'LogLevel ERROR',
			`SetEnv PATH=${standinPath}`,
			// In-process, so it does not depend on where the distribution puts sftp-server.
			'Subsystem sftp internal-sftp',
			''
		].join('\n')
	);
	return {
		name,
		address,
		port: 22,
		user: 'root',
		root,
		hostKeyFingerprint: await fingerprintOf(`${keyPath}.pub`),
		tlsPort
	};
}

/**
 * The appliance side of A/B updates, installed as a real appliance has it: the slot helper, slot a booted
 * and committed with image 1, slot b holding the older image 0, and a health gate check on a service.
 */
async function installSlots(root: string): Promise<void> {
	const helper = join(root, 'opt/flotilla/bin/flotilla-slot');
	await cp(slotHelperSource, helper);
	await chmod(helper, 0o755);
	const slotDir = join(root, 'boot/flotilla');
	await run('sh', [helper, 'init', 'a'], { env: { ...process.env, FLOTILLA_SLOT_DIR: slotDir } });
	await writeFile(join(slotDir, 'slot-a.img'), 'flotilla appliance image 1\n');
	await writeFile(join(slotDir, 'slot-b.img'), 'flotilla appliance image 0\n');
	await writeFile(
		join(root, 'etc/flotilla/health.d/10-appliance'),
		'#!/bin/sh\nexec systemctl is-active --quiet appliance\n',
		{
			mode: 0o755
		}
	);
}

/** A real TLS handshake with the host's listener; the certificate is not verified, only reported. */
function servedCertificate(host: TestHost): Promise<{ fingerprint: string; validTo: Date; subjectAltName: string }> {
	return new Promise((resolve, reject) => {
		const socket = tlsConnect({ host: host.address, port: host.tlsPort, rejectUnauthorized: false, timeout: 5000 });
		socket.once('secureConnect', () => {
			const cert = new X509Certificate(socket.getPeerX509Certificate()!.raw);
			socket.destroy();
			resolve({
				fingerprint: cert.fingerprint256,
				validTo: new Date(cert.validTo),
				subjectAltName: cert.subjectAltName ?? ''
			});
		});
		socket.once('timeout', () => {
			socket.destroy();
			reject(new Error(`${host.name}: no TLS handshake on ${host.address}:${host.tlsPort} within 5 s`));
		});
		socket.once('error', reject);
	});
}

function launchHost(host: TestHost): HostProcess {
	const pidPath = join(host.root, 'sshd.pid');
	rmSync(pidPath, { force: true });
	// sshd -e and the supervisor write here; appended to, so one file tells the host's whole story.
	const logPath = join(host.root, 'supervise.log');
	const log = openSync(logPath, 'a');
	const child = spawn(
		'setpriv',
		[
			'--pdeathsig',
			'KILL',
			'--',
			'unshare',
			'--mount',
			'--propagation',
			'private',
			'--pid',
			'--fork',
			'--kill-child',
			'--mount-proc',
			'sh',
			join(host.root, 'supervise.sh'),
			host.root,
			host.address
		],
		// Its own process group, so a Ctrl-C meant for the CLI reaches the CLI, which then stops the fleet.
		{ detached: true, stdio: ['ignore', log, log] }
	);
	const exited = new Promise<void>((resolve) => {
		child.once('exit', () => resolve());
		child.once('error', () => resolve());
	});
	closeSync(log);
	return { child, exited, logPath, pidPath };
}

/** Kill the host's pid 1; the kernel then kills the rest, and `unshare` exits once all are gone. */
async function killHost(hostProcess: HostProcess): Promise<void> {
	const { child } = hostProcess;
	if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
		const children = await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').catch(() => '');
		for (const pid of children.split(' ').filter(Boolean)) {
			try {
				process.kill(Number(pid), 'SIGKILL');
			} catch {
				// Already gone.
			}
		}
		if (!children.trim()) child.kill('SIGKILL');
	}
	await hostProcess.exited;
}

/**
 * sshd writes its PidFile only once it listens, so the file tells our sshd apart from another process that
 * already holds the address (a second testbed, say), whose banner alone would look the same.
 */
async function waitUntilListening(host: TestHost, hostProcess: HostProcess): Promise<void> {
	const deadline = Date.now() + readyTimeoutMs;
	let exited = false;
	void hostProcess.exited.then(() => (exited = true));
	// The TLS listener starts before sshd, but waiting for it too means a test can handshake at once.
	while (
		!(await pathExists(hostProcess.pidPath)) ||
		!(await answersWithBanner(host)) ||
		!(await acceptsConnections(host.address, host.tlsPort))
	) {
		if (exited || Date.now() > deadline) {
			const log = await readFile(hostProcess.logPath, 'utf8').catch(() => '');
			await killHost(hostProcess);
			throw new Error(
				`${host.name} could not start sshd on ${host.address}:${host.port} and TLS on :${host.tlsPort}${log ? `:\n${log}` : ''}`
			);
		}
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

function pathExists(path: string): Promise<boolean> {
	return access(path).then(
		() => true,
		() => false
	);
}

function acceptsConnections(address: string, port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const socket = connect({ host: address, port, timeout: 1000 });
		const done = (ok: boolean) => {
			socket.destroy();
			resolve(ok);
		};
		socket.once('connect', () => done(true));
		socket.once('error', () => done(false));
		socket.once('timeout', () => done(false));
	});
}

function answersWithBanner(host: TestHost): Promise<boolean> {
	return new Promise((resolve) => {
		const socket = connect({ host: host.address, port: host.port, timeout: 1000 });
		const done = (ok: boolean) => {
			socket.destroy();
			resolve(ok);
		};
		socket.once('data', (data) => done(data.toString('latin1').startsWith('SSH-2.0-')));
		socket.once('error', () => done(false));
		socket.once('timeout', () => done(false));
		socket.once('end', () => done(false));
	});
}

async function generateKey(path: string, comment: string): Promise<void> {
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
}

/** The SHA-256 of the public key blob, base64 without padding: what `ssh-keygen -lf` prints. */
async function fingerprintOf(publicKeyPath: string): Promise<string> {
	const [, blob] = (await readFile(publicKeyPath, 'utf8')).trim().split(/\s+/);
	if (!blob) throw new Error(`No public key in ${publicKeyPath}`);
	const digest = createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64');
	return `SHA256:${digest.replace(/=+$/, '')}`;
}

/** Synchronous, so two `changeHostKey` calls at once cannot interleave their writes. */
function writeKnownHosts(path: string, hosts: TestHost[]): void {
	const lines = hosts.map((host) => {
		const [type, blob] = readFileSync(join(host.root, 'etc/ssh/ssh_host_ed25519_key.pub'), 'utf8').split(/\s+/);
		return `${host.address} ${type} ${blob}\n`;
	});
	writeFileSync(path, lines.join(''));
}
