import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { classifySshError, SshError } from './errors';
import { fingerprintOf, hostKeyStatus } from './host-keys';
import { LineSplitter, TailBuffer } from './lines';
import { killGroupCommand, sh, withDeadline, type ShellCommand } from './shell';

/**
 * Whether ssh2 encrypts through its native binding. Without it (an addon built for another Node) it falls
 * back to JavaScript ciphers that create a cipher object per packet: every connection costs about twice the
 * CPU. scripts/bootstrap.sh rebuilds the binding; the console warns at start-up when it is still missing.
 */
export function nativeCiphers(): boolean {
	const crypto = createRequire(import.meta.url)('ssh2/lib/protocol/crypto.js') as { bindingAvailable: boolean };
	return crypto.bindingAvailable;
}

export interface SshTarget {
	host: string;
	port: number;
	username: string;
	privateKey: string;
	passphrase?: string;
	/** The pinned SHA-256 fingerprint; null until an admin accepts one. */
	hostKeyFingerprint: string | null;
	/** A bastion to reach this node through. */
	jump?: SshTarget;
}

export interface ConnectOptions {
	/** How long the TCP connect plus SSH handshake may take. */
	readyTimeoutMs?: number;
	keepaliveIntervalMs?: number;
	/** Channels open at once on this connection; OpenSSH's MaxSessions defaults to 10. */
	maxChannels?: number;
}

export interface OutputLine {
	stream: 'stdout' | 'stderr';
	line: string;
}

export interface ExecOptions {
	/** The command's deadline. The node enforces it (timeout --kill-after); the console backs it up. */
	deadlineMs?: number;
	onLine?: (line: OutputLine) => void;
	/**
	 * Aborting kills the command's whole process group on the node, and exec resolves (`cancelled`) only once
	 * the kill is done. Aborted before the command was sent, it is never sent.
	 */
	signal?: AbortSignal;
}

export interface ExecResult {
	exitCode: number | null;
	signal: string | null;
	durationMs: number;
	stdout: string;
	stderr: string;
	timedOut: boolean;
	cancelled: boolean;
}

const DEFAULTS = { readyTimeoutMs: 10_000, keepaliveIntervalMs: 10_000, maxChannels: 8 };
/** The grace between TERM and KILL, at a deadline (`timeout --kill-after`) and at a cancel alike. */
export const KILL_AFTER_S = 5;
/** How long past the deadline (plus timeout's grace) the console waits before it closes the channel itself. */
const BACKSTOP_MS = 3_000;
const CHANNEL_RETRIES = 20;

/** Opens an SSH connection, verifying the node's host key against the pinned fingerprint. */
export async function connect(target: SshTarget, options: ConnectOptions = {}): Promise<SshConnection> {
	const opts = { ...DEFAULTS, ...options };
	const name = `${target.username}@${target.host}:${target.port}`;
	let jump: SshConnection | undefined;
	let sock: Readable | undefined;
	if (target.jump) {
		jump = await connect(target.jump, options);
		try {
			sock = await jump.forward(target.host, target.port);
		} catch (err) {
			jump.close();
			throw classifySshError(err, name);
		}
	}

	const client = new Client();
	let presented: string | undefined;
	const config: ConnectConfig = {
		host: target.host,
		port: target.port,
		username: target.username,
		privateKey: target.privateKey,
		passphrase: target.passphrase,
		sock,
		readyTimeout: opts.readyTimeoutMs,
		keepaliveInterval: opts.keepaliveIntervalMs,
		keepaliveCountMax: 3,
		// The node must present the pinned key; an unknown or changed key refuses the connection.
		hostVerifier: (key: Buffer) => {
			presented = fingerprintOf(key);
			return hostKeyStatus(target.hostKeyFingerprint, presented) === 'pinned';
		}
	};

	return new Promise((resolve, reject) => {
		let settled = false;
		const fail = (err: unknown) => {
			if (settled) return;
			settled = true;
			client.removeAllListeners('ready');
			// destroy, not end: a host that never finished the handshake must not keep a socket open.
			client.destroy();
			jump?.close();
			const status = presented ? hostKeyStatus(target.hostKeyFingerprint, presented) : 'pinned';
			if (status === 'unknown') {
				reject(
					new SshError('host_key_unknown', `${name} presented ${presented}, which no admin has accepted yet`, presented)
				);
			} else if (status === 'changed') {
				reject(
					new SshError(
						'host_key_changed',
						`${name} presented ${presented} instead of the pinned ${target.hostKeyFingerprint}: refusing to connect`,
						presented
					)
				);
			} else {
				reject(classifySshError(err, name));
			}
		};
		// ssh2 may report more than one error for one failed attempt: the listener stays, `settled` dedupes.
		client.on('error', fail);
		client.once('ready', () => {
			settled = true;
			client.off('error', fail);
			resolve(new SshConnection(client, name, presented!, opts.maxChannels, jump));
		});
		client.connect(config);
		// Nagle's algorithm holds back the small packets every exec exchanges until a delayed ACK: with it on,
		// one exec took 96 ms on loopback, without it 15 ms (docs/benchmarks.md).
		client.setNoDelay(true);
	});
}

/**
 * One connection to one node, reused for every step of a task. Channels are limited so that parallel
 * steps never exceed the server's MaxSessions.
 */
export class SshConnection {
	private active = 0;
	private readonly waiting: (() => void)[] = [];
	private lost: SshError | undefined;

	constructor(
		private readonly client: Client,
		readonly name: string,
		readonly fingerprint: string,
		private readonly maxChannels: number,
		private readonly jump?: SshConnection
	) {
		// An error after the handshake (dropped link, keepalive timeout) ends the connection, never the process.
		client.on('error', (err) => {
			this.lost = classifySshError(err, name);
		});
		client.on('close', () => {
			this.lost ??= new SshError('disconnected', `The connection to ${name} closed`);
			this.jump?.close();
		});
	}

	get closed(): boolean {
		return this.lost !== undefined;
	}

	close(): void {
		this.client.end();
	}

	/**
	 * Holds one of the connection's channels for `work`. A channel that ends is handed straight to the first
	 * waiter, `active` unchanged: were it given back and taken again, the waiter would take it only after
	 * its wake-up, and a caller arriving in between would find it free and open one channel too many.
	 */
	private async slot<T>(work: () => Promise<T>): Promise<T> {
		if (this.active < this.maxChannels) this.active++;
		else await new Promise<void>((r) => this.waiting.push(r));
		try {
			return await work();
		} finally {
			const next = this.waiting.shift();
			if (next) next();
			else this.active--;
		}
	}

	/**
	 * Runs a command on the node and streams its output line by line. The node runs it under
	 * `timeout --kill-after`, in its own process group, so that a deadline or a cancel leaves nothing behind.
	 *
	 * The wrapper reports the command's process group and, at the end, its exit status on stderr, tagged
	 * with a nonce so a command's own output cannot imitate them. The in-band status matters: the SSH
	 * protocol makes `exit-status` optional, and sshd occasionally closes a channel without it.
	 */
	exec(command: ShellCommand, options: ExecOptions = {}): Promise<ExecResult> {
		const deadlineMs = options.deadlineMs ?? 60_000;
		const tag = `flotilla-${randomBytes(6).toString('hex')}`;
		const wrapped = withDeadline(command, deadlineMs / 1000, KILL_AFTER_S);
		const script = sh`${wrapped} & p=$!; printf '%s-pid:%s\\n' ${tag} "$p" >&2; wait "$p"; r=$?; printf '%s-exit:%s\\n' ${tag} "$r" >&2; exit "$r"`;
		return this.slot(() => this.run(script, tag, deadlineMs, options));
	}

	/**
	 * Opens an exec channel. A server may still count a just-closed session for a moment (or allow fewer
	 * than our limit), and refuses the open then: that is retried briefly instead of failing the step.
	 */
	private async openExec(script: string): Promise<ClientChannel> {
		for (let attempt = 1; ; attempt++) {
			try {
				return await new Promise<ClientChannel>((resolve, reject) =>
					this.client.exec(script, (err, channel) => (err ? reject(err) : resolve(channel)))
				);
			} catch (err) {
				const refused = /open failed|Channel open failure/i.test((err as Error).message);
				if (!refused || attempt >= CHANNEL_RETRIES || this.lost) throw classifySshError(err, this.name);
				await new Promise((r) => setTimeout(r, 20 * attempt));
			}
		}
	}

	private async run(script: ShellCommand, tag: string, deadlineMs: number, options: ExecOptions): Promise<ExecResult> {
		// Cancelled before the call or while it waited for a channel: nothing of it may run on the node.
		if (options.signal?.aborted) {
			return { exitCode: null, signal: null, durationMs: 0, stdout: '', stderr: '', timedOut: false, cancelled: true };
		}
		if (this.lost) throw this.lost;
		const started = performance.now();
		const channel = await this.openExec(script.script);
		return new Promise((resolve, reject) => {
			const stdout = new TailBuffer();
			const stderr = new TailBuffer();
			let pid: number | undefined;
			let reportedExit: number | undefined;
			let exitCode: number | null = null;
			let exitSignal: string | null = null;
			let backstopFired = false;
			let cancelled = false;
			let killing: Promise<void> | undefined;

			// A kill needs the pid, which arrives once the wrapper runs: an abort (or the backstop) that comes
			// before it is carried out when it arrives.
			const killWhenKnown = () => {
				if ((cancelled || backstopFired) && pid !== undefined && !killing && !this.lost) killing = this.killGroup(pid);
			};

			const out = new LineSplitter((line) => {
				stdout.append(line);
				options.onLine?.({ stream: 'stdout', line });
			});
			const errLines = new LineSplitter((line) => {
				if (line.startsWith(`${tag}-pid:`)) {
					pid = Number(line.slice(tag.length + 5));
					killWhenKnown();
					return;
				}
				if (line.startsWith(`${tag}-exit:`)) {
					reportedExit = Number(line.slice(tag.length + 6));
					return;
				}
				stderr.append(line);
				options.onLine?.({ stream: 'stderr', line });
			});

			const backstop = setTimeout(
				() => {
					backstopFired = true;
					killWhenKnown();
					channel.close();
				},
				deadlineMs + KILL_AFTER_S * 1000 + BACKSTOP_MS
			);
			const onAbort = () => {
				cancelled = true;
				killWhenKnown();
			};
			if (options.signal?.aborted) onAbort();
			options.signal?.addEventListener('abort', onAbort, { once: true });

			channel.on('data', (chunk: Buffer) => out.push(chunk));
			channel.stderr.on('data', (chunk: Buffer) => errLines.push(chunk));
			channel.on('exit', (code: number | null, signalName?: string) => {
				exitCode = code ?? null;
				exitSignal = signalName ?? null;
			});
			channel.on('error', () => {});
			channel.on('close', () => {
				clearTimeout(backstop);
				options.signal?.removeEventListener('abort', onAbort);
				out.end();
				errLines.end();
				exitCode = reportedExit ?? exitCode;
				if (this.lost && exitCode === null && !cancelled) {
					return reject(this.lost);
				}
				const settle = () =>
					resolve({
						exitCode,
						signal: exitSignal,
						durationMs: Math.round(performance.now() - started),
						stdout: stdout.toString(),
						stderr: stderr.toString(),
						// `timeout` exits 124 at the deadline (137 if it had to KILL after the grace period).
						timedOut: backstopFired || (!cancelled && (exitCode === 124 || (exitCode === 137 && !exitSignal))),
						cancelled
					});
				// The channel closes when the wrapper exits, which can be before the rest of the group is dead. A
				// caller must be able to rely on a cancelled command being dead (the engine runs the step's undo
				// next), so the result waits for the kill.
				if (killing) void killing.then(settle);
				else settle();
			});
		});
	}

	/**
	 * Ends a command's whole process group on the node: TERM, then KILL for anything still there after the same
	 * grace `timeout` gives at a deadline. Resolves once the group is gone or KILL was sent (or the kill could not
	 * be run at all: the connection is gone).
	 *
	 * The grace is not shorter on purpose: `timeout` forwards the TERM to the group again, so a command's TERM
	 * handler may run twice in a row (bash runs a trap once per signal received), and with the one second this
	 * used to wait, a half-second clean-up was killed halfway through one run in five (tests/integration/
	 * engine-failures.spec.ts, reproduced locally: 8 of 40).
	 */
	private async killGroup(pid: number): Promise<void> {
		const kill = killGroupCommand(pid, KILL_AFTER_S);
		// Outside the channel limit on purpose (a cancel must not queue behind the command it cancels), so a
		// server at MaxSessions may refuse it at first: openExec retries that.
		const channel = await this.openExec(kill.script).catch(() => undefined);
		if (!channel) return;
		await new Promise<void>((resolve) => {
			channel.on('close', () => resolve());
			channel.on('error', () => resolve());
			channel.resume();
		});
	}

	sftp(): Promise<SFTPWrapper> {
		if (this.lost) return Promise.reject(this.lost);
		return new Promise((resolve, reject) => {
			this.client.sftp((err, sftp) => (err ? reject(classifySshError(err, this.name)) : resolve(sftp)));
		});
	}

	/** A TCP stream to host:port as seen from this node: how a bastion reaches the nodes behind it. */
	forward(host: string, port: number): Promise<Readable> {
		return new Promise((resolve, reject) => {
			this.client.forwardOut('127.0.0.1', 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream)));
		});
	}
}
