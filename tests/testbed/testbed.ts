/**
 * The testbed: a fleet of real OpenSSH servers on loopback, one per test host, for integration tests,
 * benchmarks and `npm run testbed`. See DESIGN.md, "Testing".
 *
 * Each host is Debian's own `/usr/sbin/sshd` listening on `127.0.1.N:22`, started as
 *
 *   setpriv --pdeathsig KILL -- unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
 *     sh <host>/supervise.sh <host>
 *
 * - The private mount namespace lets host/supervise.sh bind the host's own directories over /opt,
 *   /etc/flotilla-testbed, /var/lib/flotilla-testbed, /boot and /root, so what one host writes there no
 *   other host (and not the real machine) sees. Those mounts exist only inside the namespace: they vanish
 *   with its last process, so nothing ever needs unmounting.
 * - The pid namespace makes the supervisor pid 1 of the host: killing it kills every process of the host at
 *   once (sshd, every session, a hung stand-in), and the `reboot` stand-in's `kill -1` reaches this host
 *   only. Its own /proc keeps `$$`, `ps` and /proc/<pid> consistent inside the host.
 * - `--pdeathsig KILL` and `--kill-child` chain the host's life to the Node process that started it (more
 *   precisely its spawning thread), so a crashed test run leaves no sshd behind.
 *
 * Stand-ins for what a sandbox cannot do (`systemctl`, `apt-get`, `apt`, `reboot`) live in each host's
 * /opt/flotilla-testbed/bin, first on sshd's PATH; they log every call and obey the fault files that
 * `setFault` writes. The scripts are in ./host and are copied into every host, so a test may edit one host's.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { access, chmod, cp, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

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
}

export const faults = ['fail-step', 'hang', 'slow-output', 'drop-connection', 'fail-health', 'fail-boot'] as const;
/**
 * - `fail-step`, `hang`, `drop-connection`: the value names the stand-ins hit (`systemctl`, `apt-get`, `apt`,
 *   `reboot`), one per line; without a value every stand-in is hit. They exit 1 with a message on stderr,
 *   sleep forever, or kill the sshd processes of their own session.
 * - `slow-output`: every stand-in first prints 20 lines, 0.2 s apart.
 * - `fail-health`: `systemctl is-active` (and `status`) say `failed` and exit 3.
 * - `fail-boot`: after a `reboot` the host stays down until `clearFaults` and `startHost`.
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
	/** Lines `<epoch-ms> <name> <args...>` the stand-ins appended, oldest first. */
	commandLog(host: TestHost): Promise<string[]>;
	/** Kills every host's processes and removes `dir`. Idempotent. */
	stop(): Promise<void>;
}

const hostTemplate = new URL('./host/', import.meta.url).pathname;
/** Real-filesystem paths each host's namespace mounts its own directory over. */
const mountedPaths = ['/opt', '/etc/flotilla-testbed', '/var/lib/flotilla-testbed', '/boot', '/root'];
const standinPath = '/opt/flotilla-testbed/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';
const readyTimeoutMs = 10_000;

export async function startTestbed(opts: { hosts: number; firstHost?: number }): Promise<Testbed> {
	const firstHost = opts.firstHost ?? 10;
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

		const hosts = await Promise.all(
			Array.from({ length: count }, (_, i) => createHost(dir, i + 1, firstHost + i, clientPublicKey))
		);
		const knownHostsPath = join(dir, 'known_hosts');
		writeKnownHosts(knownHostsPath, hosts);

		const testbed: Testbed = {
			dir,
			hosts,
			clientPrivateKey: await readFile(clientPrivateKeyPath, 'utf8'),
			clientPrivateKeyPath,
			knownHostsPath,
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
		await Promise.all(hosts.map((host) => testbed.startHost(host)));
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
		'etc/flotilla-testbed/faults',
		'var/lib/flotilla-testbed/units',
		'boot',
		'root/.ssh'
	]) {
		await mkdir(join(root, path), { recursive: true });
	}
	await cp(join(hostTemplate, 'bin'), join(root, 'opt/flotilla-testbed/bin'), {
		recursive: true,
		verbatimSymlinks: true
	});
	await cp(join(hostTemplate, 'lib'), join(root, 'opt/flotilla-testbed/lib'), { recursive: true });
	for (const script of ['systemctl', 'apt-get', 'reboot']) {
		await chmod(join(root, 'opt/flotilla-testbed/bin', script), 0o755);
	}
	await cp(join(hostTemplate, 'supervise.sh'), join(root, 'supervise.sh'));
	await writeFile(join(root, 'var/lib/flotilla-testbed/boot-count'), '0\n');
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
		hostKeyFingerprint: await fingerprintOf(`${keyPath}.pub`)
	};
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
			host.root
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
	while (!(await pathExists(hostProcess.pidPath)) || !(await answersWithBanner(host))) {
		if (exited || Date.now() > deadline) {
			const log = await readFile(hostProcess.logPath, 'utf8').catch(() => '');
			await killHost(hostProcess);
			throw new Error(`${host.name} could not start sshd on ${host.address}:${host.port}${log ? `:\n${log}` : ''}`);
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
