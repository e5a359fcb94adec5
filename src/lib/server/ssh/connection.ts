import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import { classifySshError, SshError } from './errors';
import { fingerprintOf, hostKeyStatus } from './host-keys';
import { CommandWatch, KILL_AFTER_S, NEVER_SENT, type ExecOptions, type ExecResult } from './command-watch';
import { LineSplitter } from './lines';
import { Runner, RUNNER_UNAVAILABLE, runnerScript } from './runner';
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

export { KILL_AFTER_S, type ExecOptions, type ExecResult, type OutputLine } from './command-watch';

/** A nonce for a wrapper's in-band markers, so that a command's own output cannot imitate them. */
const newTag = () => `flotilla-${randomBytes(6).toString('hex')}`;

const DEFAULTS = { readyTimeoutMs: 10_000, keepaliveIntervalMs: 10_000, maxChannels: 8 };
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
	private runner: Runner | undefined;
	/** The runner could not start on this node: every command gets an exec of its own. */
	private runnerRefused = false;

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

	/** Open, with no command running and no channel held: another caller may use it (ssh/warm.ts). */
	get idle(): boolean {
		return !this.lost && this.active === 0 && !this.runner?.busy;
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
	 * A command goes through the connection's runner (ssh/runner.ts) when it is free: one exec channel kept
	 * open that runs commands in turn, instead of a new sshd session per command. One that holds a slot while
	 * the runner is busy (parallel steps), or on a node where the runner cannot start, gets an exec of its own;
	 * it runs the same way and reports the same markers. At most `maxChannels` commands run at once either
	 * way; an idle runner is one channel more, within OpenSSH's default MaxSessions of 10.
	 */
	async exec(command: ShellCommand, options: ExecOptions = {}): Promise<ExecResult> {
		const deadlineMs = options.deadlineMs ?? 60_000;
		return this.slot(async () => {
			// Cancelled before the call or while it waited for a channel: nothing of it may run on the node.
			if (options.signal?.aborted) return NEVER_SENT;
			if (this.lost) throw this.lost;
			const runner = this.idleRunner();
			if (runner) {
				const result = await runner.run(command.script, deadlineMs, options);
				if (result !== RUNNER_UNAVAILABLE) return result;
				this.runnerRefused = !runner.started;
			}
			return this.run(command, deadlineMs, options);
		});
	}

	/** The runner, started on first use, if it is free. */
	private idleRunner(): Runner | undefined {
		if (this.runnerRefused) return undefined;
		if (this.runner?.usable) return this.runner.busy ? undefined : this.runner;
		const tag = newTag();
		const kill = (pid: number) => this.killGroup(pid);
		const runner = new Runner(this.openExec(runnerScript(tag)), tag, { kill, lost: () => this.lost }, () => {
			if (this.runner === runner) this.runner = undefined;
		});
		this.runner = runner;
		return runner;
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

	/** A command on an exec channel of its own: over when the channel closes. */
	private async run(command: ShellCommand, deadlineMs: number, options: ExecOptions): Promise<ExecResult> {
		const tag = newTag();
		const wrapped = withDeadline(command, deadlineMs / 1000, KILL_AFTER_S);
		const script = sh`${wrapped} & p=$!; printf '%s-pid:%s\\n' ${tag} "$p" >&2; wait "$p"; r=$?; printf '%s-exit:%s\\n' ${tag} "$r" >&2; exit "$r"`;
		const channel = await this.openExec(script.script);
		const watch = new CommandWatch(tag, deadlineMs, options, {
			kill: (pid) => this.killGroup(pid),
			cut: () => channel.close(),
			lost: () => this.lost
		});
		const out = new LineSplitter((line) => watch.outLine(line));
		const err = new LineSplitter((line) => watch.errLine(line));
		channel.on('data', (chunk: Buffer) => out.push(chunk));
		channel.stderr.on('data', (chunk: Buffer) => err.push(chunk));
		channel.on('exit', (code: number | null, signalName?: string) => watch.channelExit(code, signalName));
		channel.on('error', () => {});
		channel.on('close', () => {
			out.end();
			err.end();
			watch.finish();
		});
		return watch.result;
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
