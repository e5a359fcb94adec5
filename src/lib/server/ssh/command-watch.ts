import type { SshError } from './errors';
import { TailBuffer } from './lines';

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

/** The grace between TERM and KILL, at a deadline (`timeout --kill-after`) and at a cancel alike. */
export const KILL_AFTER_S = 5;
/** How long past the deadline (plus timeout's grace) the console waits before it cuts the command off itself. */
const BACKSTOP_MS = 3_000;

export interface WatchHooks {
	/** Ends the command's process group on the node (ssh/shell.ts, killGroupCommand). */
	kill(pid: number): Promise<void>;
	/** Closes the channel the command runs on: the backstop when the node's own deadline did not end it. */
	cut(): void;
	/** Why the connection is gone, if it is. */
	lost(): SshError | undefined;
}

/** A result for a command that never reached the node: cancelled before it was sent. */
export const NEVER_SENT: ExecResult = {
	exitCode: null,
	signal: null,
	durationMs: 0,
	stdout: '',
	stderr: '',
	timedOut: false,
	cancelled: true
};

/**
 * One command's life on the console's side, whichever channel carries it (an exec of its own, or the runner
 * of ssh/runner.ts): its output lines, the in-band markers the node's wrapper writes (`<tag>-pid:`,
 * `<tag>-exit:`, tagged with a nonce so that a command's own output cannot imitate them), its deadline's
 * backstop, and a cancel that kills its process group. The in-band exit status matters: the SSH protocol makes
 * `exit-status` optional, and sshd occasionally closes a channel without it.
 */
export class CommandWatch {
	readonly result: Promise<ExecResult>;
	private resolve!: (r: ExecResult) => void;
	private reject!: (e: unknown) => void;
	private readonly started = performance.now();
	private readonly stdout = new TailBuffer();
	private readonly stderr = new TailBuffer();
	private pid: number | undefined;
	private reportedExit: number | undefined;
	private exitCode: number | null = null;
	private exitSignal: string | null = null;
	private backstopFired = false;
	private cancelled = false;
	private killing: Promise<void> | undefined;
	private settled = false;
	private readonly backstop: NodeJS.Timeout;
	private readonly onAbort = () => {
		this.cancelled = true;
		this.killWhenKnown();
	};

	constructor(
		private readonly tag: string,
		deadlineMs: number,
		private readonly options: ExecOptions,
		private readonly hooks: WatchHooks
	) {
		this.result = new Promise((resolve, reject) => {
			this.resolve = resolve;
			this.reject = reject;
		});
		this.backstop = setTimeout(
			() => {
				this.backstopFired = true;
				this.killWhenKnown();
				hooks.cut();
			},
			deadlineMs + KILL_AFTER_S * 1000 + BACKSTOP_MS
		);
		if (options.signal?.aborted) this.onAbort();
		options.signal?.addEventListener('abort', this.onAbort, { once: true });
	}

	/** Whether the command's exit status has arrived in band. */
	get exited(): boolean {
		return this.reportedExit !== undefined;
	}

	/**
	 * A kill needs the pid, which arrives once the wrapper runs: an abort (or the backstop) that comes before
	 * it is carried out when it arrives.
	 */
	private killWhenKnown(): void {
		if ((this.cancelled || this.backstopFired) && this.pid !== undefined && !this.killing && !this.hooks.lost()) {
			this.killing = this.hooks.kill(this.pid);
		}
	}

	/** A marker ends the line it is on; what precedes it is the command's last line, printed without a newline. */
	private marker(line: string, name: string): { value: string; before: string } | undefined {
		const at = line.indexOf(`${this.tag}-${name}`);
		if (at < 0) return undefined;
		return { value: line.slice(at + this.tag.length + name.length + 1), before: line.slice(0, at) };
	}

	/** A line of the command's stdout; says whether it carried the runner's end marker (`<tag>-end`). */
	outLine(line: string): boolean {
		const end = this.marker(line, 'end');
		if (end) {
			if (end.before) this.output('stdout', end.before);
			return true;
		}
		this.output('stdout', line);
		return false;
	}

	errLine(line: string): void {
		const pid = this.marker(line, 'pid:');
		if (pid) {
			if (pid.before) this.output('stderr', pid.before);
			this.pid = Number(pid.value);
			this.killWhenKnown();
			return;
		}
		const exit = this.marker(line, 'exit:');
		if (exit) {
			if (exit.before) this.output('stderr', exit.before);
			this.reportedExit = Number(exit.value);
			return;
		}
		this.output('stderr', line);
	}

	private output(stream: 'stdout' | 'stderr', line: string): void {
		(stream === 'stdout' ? this.stdout : this.stderr).append(line);
		this.options.onLine?.({ stream, line });
	}

	/** The channel's own exit status, when sshd sends one (the in-band one wins). */
	channelExit(code: number | null, signalName?: string): void {
		this.exitCode = code ?? null;
		this.exitSignal = signalName ?? null;
	}

	/** The command is over: its channel closed, or the runner reported its end. */
	finish(): void {
		if (this.settled) return;
		this.settled = true;
		clearTimeout(this.backstop);
		this.options.signal?.removeEventListener('abort', this.onAbort);
		const exitCode = this.reportedExit ?? this.exitCode;
		const lost = this.hooks.lost();
		if (lost && exitCode === null && !this.cancelled) return this.reject(lost);
		const settle = () =>
			this.resolve({
				exitCode,
				signal: this.exitSignal,
				durationMs: Math.round(performance.now() - this.started),
				stdout: this.stdout.toString(),
				stderr: this.stderr.toString(),
				// `timeout` exits 124 at the deadline (137 if it had to KILL after the grace period).
				timedOut:
					this.backstopFired || (!this.cancelled && (exitCode === 124 || (exitCode === 137 && !this.exitSignal))),
				cancelled: this.cancelled
			});
		// The wrapper can end before the rest of the group is dead. A caller must be able to rely on a cancelled
		// command being dead (the engine runs the step's undo next), so the result waits for the kill.
		if (this.killing) void this.killing.then(settle);
		else settle();
	}
}
