import { createServer, type Server as NetServer, type Socket } from 'node:net';
import ssh2 from 'ssh2';
import { fingerprintOf } from '$lib/server/ssh/host-keys';
import { KILL_AFTER_S } from '$lib/server/ssh/connection';
import { RunnerFrames, runnerTagOf } from '$lib/server/ssh/runner';
import { killGroupCommand } from '$lib/server/ssh/shell';
import { authorizedKeysPath, letsIn } from './authorized-keys';
import { newHostModel, rebootRequiredPath, runCommandLine, type CommandIO, type HostModel } from './host';
import { serveSftp } from './sftp';
import { bootAppliance } from './slots';
import { tokenize } from './words';

/**
 * An in-process SSH server that behaves like one node: it authenticates the console's key, answers the
 * commands the console sends from a HostModel, and can misbehave at the protocol level (refuse, hang before
 * the banner, drop a connection). Used for the demo fleet and for scale tests with thousands of nodes.
 */
export interface SimulatedHost {
	name: string;
	address: string;
	port: number;
	model: HostModel;
	hostKeyFingerprint: string;
	/** The host's private key (OpenSSH format), to restart it with the same identity. */
	hostKey: string;
	/** New host key, as after a reinstall; returns its fingerprint. */
	changeHostKey(): string;
	/** Stops listening (connections refused) or starts again on the same port. */
	setRefusing(refusing: boolean): Promise<void>;
	/** TCP connections open to this host now (to check that clients close what they open). */
	readonly openConnections: number;
	/** Settles when the reboot in progress (if any) is over: true when the host came back up. */
	rebooted(): Promise<boolean>;
	stop(): Promise<void>;
}

export interface SimulatedHostOptions {
	name: string;
	address?: string;
	port?: number;
	/** The console's public key (an `ssh-ed25519 AAAA…` line) that may sign in. */
	authorizedKey: string;
	hostKey?: string;
	model?: HostModel;
	/** How long a `reboot` keeps the host unreachable, as the testbed's 2 s (default). */
	rebootDelayMs?: number;
}

// The exact wrapper SshConnection.exec sends (see connection.ts); the simulator runs what is inside it.
const WRAPPER =
	/^timeout --kill-after=\d+ (\d+) bash -c ('(?:[^']|'\\'')*') & p=\$!; printf '%s-pid:%s\\n' '(flotilla-[0-9a-f]+)' "\$p" >&2; wait "\$p"; r=\$\?; printf '%s-exit:%s\\n' '\3' "\$r" >&2; exit "\$r"$/;

/** The process group a command line is the console's group kill of (see connection.ts), or null. */
function groupKilled(command: string): number | null {
	const pid = /^kill -TERM -- -(\d+) /.exec(command)?.[1];
	if (pid === undefined) return null;
	return command === killGroupCommand(Number(pid), KILL_AFTER_S).script ? Number(pid) : null;
}

/**
 * A new ed25519 private key in OpenSSH format. ssh2's generator now and then writes a key its own parser
 * rejects as malformed (seen about once in a few hundred keys), so each key is parsed before it is used.
 */
export function newHostKey(): string {
	for (let attempt = 0; attempt < 10; attempt++) {
		const key = ssh2.utils.generateKeyPairSync('ed25519').private;
		if (!(ssh2.utils.parseKey(key) instanceof Error)) return key;
	}
	throw new Error('could not generate a readable ed25519 key');
}

/** The `authorized_keys` line (`type base64`) for a private key: what a simulated host lets in. */
export function authorizedKeyOf(privateKey: string): string {
	const parsed = ssh2.utils.parseKey(privateKey);
	if (parsed instanceof Error) throw parsed;
	return `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
}

/**
 * Starts `count` simulated hosts named `<prefix>-0001`… on one address (each on its own port), 100 at a time.
 * They share one host key: generating thousands costs seconds and proves nothing in a scale run.
 */
export async function startSimulatedHosts(opts: {
	count: number;
	prefix: string;
	address: string;
	authorizedKey: string;
	hostKey?: string;
}): Promise<SimulatedHost[]> {
	const hostKey = opts.hostKey ?? newHostKey();
	const hosts: SimulatedHost[] = [];
	for (let i = 0; i < opts.count; i += 100) {
		const batch = Array.from({ length: Math.min(100, opts.count - i) }, (_, j) =>
			startSimulatedHost({
				name: `${opts.prefix}-${String(i + j + 1).padStart(4, '0')}`,
				address: opts.address,
				authorizedKey: opts.authorizedKey,
				hostKey
			})
		);
		hosts.push(...(await Promise.all(batch)));
	}
	return hosts;
}

function fingerprintOfPrivate(key: string): string {
	const parsed = ssh2.utils.parseKey(key);
	if (parsed instanceof Error) throw parsed;
	return fingerprintOf(parsed.getPublicSSH());
}

export async function startSimulatedHost(opts: SimulatedHostOptions): Promise<SimulatedHost> {
	const authorized = ssh2.utils.parseKey(opts.authorizedKey);
	if (authorized instanceof Error) throw authorized;
	const model = opts.model ?? newHostModel(opts.name);
	// The console's key is installed as on a host set up for it; a model that has its own file keeps it.
	if (!model.files.has(authorizedKeysPath)) model.files.set(authorizedKeysPath, `${opts.authorizedKey}\n`);
	let hostKey = opts.hostKey ?? newHostKey();
	const sockets = new Set<Socket>();
	let nextPid = 1000;

	const makeSsh = () =>
		new ssh2.Server({ hostKeys: [hostKey], ident: 'OpenSSH_9.2p1 Debian-2+deb12u3' }, (client) => {
			client.on('error', () => {});
			client.on('authentication', (ctx) => {
				if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
				const signed = ctx.signature
					? { blob: ctx.blob!, signature: ctx.signature, hashAlgo: ctx.hashAlgo }
					: undefined;
				if (letsIn(model, ctx.key, signed)) return ctx.accept();
				ctx.reject(['publickey']);
			});
			client.on('ready', () => {
				client.on('session', (acceptSession) => {
					const session = acceptSession();
					session.on('exec', (accept, _reject, info) => {
						const channel = accept();
						channel.on('error', () => {});
						void execute(info.command, channel);
					});
					session.on('sftp', (accept) => serveSftp(accept(), model));
				});
			});
		});
	let ssh = makeSsh();

	const running = new Map<number, AbortController>();
	let rebooting: Promise<boolean> = Promise.resolve(true);
	let stopped = false;

	/**
	 * As the testbed's reboot stand-in and supervisor do it: the command returns, 300 ms later every
	 * session drops and the host refuses connections, then it boots (A/B slot logic, /run emptied, boot
	 * counted) and listens again, unless the boot fails and it stays down.
	 */
	function reboot(): void {
		rebooting = (async () => {
			await new Promise((r) => setTimeout(r, 300));
			await close();
			await new Promise((r) => setTimeout(r, opts.rebootDelayMs ?? 2000));
			if (stopped || !bootAppliance(model)) return false;
			model.files.delete(rebootRequiredPath);
			model.files.delete(`${rebootRequiredPath}.pkgs`);
			model.apt.restartServices.clear();
			model.bootCount++;
			front = createFront();
			await listen(port);
			return true;
		})();
	}

	async function execute(command: string, channel: ssh2.ServerChannel) {
		const victim = groupKilled(command);
		if (victim !== null) {
			running.get(victim)?.abort('killed');
			channel.exit(0);
			channel.end();
			return;
		}
		const runnerTag = runnerTagOf(command);
		if (runnerTag && !model.faults.noRunner) return serveRunner(runnerTag, channel);
		if (runnerTag) {
			channel.stderr.write('sh: 2: Syntax error: "do" unexpected\n');
			channel.exit(2);
			channel.end();
			return;
		}
		const wrapped = WRAPPER.exec(command);
		const status = wrapped
			? await runOne((tokenize(wrapped[2]!)[0] as { word: string }).word, Number(wrapped[1]), wrapped[3]!, channel)
			: await runOne(command, 0, undefined, channel);
		try {
			channel.exit(status);
			channel.end();
		} catch {
			// The connection is gone (dropped, or the client left): nothing to report to.
		}
	}

	/** The console's runner (ssh/runner.ts): frames read from the channel, run one after another. */
	function serveRunner(tag: string, channel: ssh2.ServerChannel) {
		channel.write(`${tag}-ready\n`);
		const frames = new RunnerFrames();
		let queue = Promise.resolve();
		channel.on('data', (chunk: Buffer) => {
			for (const frame of frames.push(chunk.toString('utf8'))) {
				queue = queue
					.then(async () => {
						const id = `${tag}.${frame.id}`;
						await runOne(frame.script, frame.seconds, id, channel);
						channel.write(`${id}-end\n`);
					})
					// The connection is gone (dropped, or the client left): nothing to report to.
					.catch(() => {});
			}
		});
		channel.on('end', () => void queue.then(() => channel.end()));
	}

	/** Runs one command line as the wrapper would on a host, markers included when it has a tag; its status. */
	async function runOne(inner: string, deadlineS: number, tag: string | undefined, channel: ssh2.ServerChannel) {
		const pid = nextPid++;
		const abort = new AbortController();
		running.set(pid, abort);
		const timer = deadlineS ? setTimeout(() => abort.abort('deadline'), deadlineS * 1000) : undefined;
		const killed = () =>
			new Promise<never>((_, reject) => {
				if (abort.signal.aborted) reject(abort.signal.reason);
				abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
			});
		const io: CommandIO = {
			out: async (line) => void channel.write(line + '\n'),
			err: async (line) => void channel.stderr.write(line + '\n'),
			sleep: (ms) => Promise.race([new Promise<void>((r) => setTimeout(r, ms)), killed()]),
			hang: killed,
			drop: () => {
				for (const s of sockets) s.destroy();
				return killed();
			},
			reboot
		};
		if (tag) await io.err(`${tag}-pid:${pid}`);
		let status: number;
		try {
			status = await runCommandLine(model, inner, io);
		} catch (reason) {
			// timeout(1) exits 124 at the deadline; a process killed by TERM reports 143.
			status = reason === 'deadline' ? 124 : 143;
		} finally {
			clearTimeout(timer);
			running.delete(pid);
		}
		if (tag) await io.err(`${tag}-exit:${status}`);
		return status;
	}

	let front: NetServer = createFront();
	function createFront(): NetServer {
		return createServer((socket) => {
			sockets.add(socket);
			socket.on('close', () => sockets.delete(socket));
			socket.on('error', () => {});
			// A host that hangs before its banner holds the connection and says nothing.
			if (model.faults.hangBeforeBanner) return;
			ssh.injectSocket(socket);
		});
	}
	const listen = (port: number) =>
		new Promise<number>((resolve, reject) => {
			front.once('error', reject);
			front.listen(port, opts.address ?? '127.0.0.1', () => {
				front.off('error', reject);
				resolve((front.address() as { port: number }).port);
			});
		});
	const port = await listen(opts.port ?? 0);
	const close = () =>
		new Promise<void>((resolve) => {
			for (const s of sockets) s.destroy();
			front.close(() => resolve());
		});

	const host: SimulatedHost = {
		name: opts.name,
		address: opts.address ?? '127.0.0.1',
		port,
		model,
		get hostKey() {
			return hostKey;
		},
		hostKeyFingerprint: fingerprintOfPrivate(hostKey),
		changeHostKey() {
			hostKey = newHostKey();
			ssh = makeSsh();
			for (const s of sockets) s.destroy();
			host.hostKeyFingerprint = fingerprintOfPrivate(hostKey);
			return host.hostKeyFingerprint;
		},
		async setRefusing(refusing) {
			if (refusing) return close();
			if (front.listening) return;
			front = createFront();
			await listen(port);
		},
		get openConnections() {
			return sockets.size;
		},
		rebooted: () => rebooting,
		stop: async () => {
			stopped = true;
			await close();
		}
	};
	return host;
}
