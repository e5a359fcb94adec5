import type { ClientChannel } from 'ssh2';
import { CommandWatch, KILL_AFTER_S, type ExecOptions, type ExecResult, type WatchHooks } from './command-watch';
import { LineSplitter } from './lines';
import { quote } from './shell';

/**
 * The node's side of the runner: one exec channel that runs a task's commands one after another, so each
 * command costs a line on the channel instead of a new sshd session (a channel open, a fork of sshd's session
 * child, the user's shell, a channel close: docs/benchmarks.md, "Update engine: one channel per task").
 *
 * Each command arrives as a frame: a line `<id> <seconds> <lines>`, then the command's `<lines>` lines. It runs
 * exactly as a command of its own exec does (`timeout --kill-after … bash -c`, so in its own process group
 * with the node enforcing its deadline), with stdin from /dev/null, so it can never read the frames that follow.
 * The markers: `<tag>.<id>-pid:` and `<tag>.<id>-exit:` on stderr, as a plain exec's, and `<tag>.<id>-end` on
 * stdout once the command is over, so the console knows both streams are drained. `<tag>-ready` on stdout
 * says the runner started: a command sent to a runner that never became ready never ran.
 *
 * POSIX sh and coreutils' `timeout`, as every exec already needs. dash's `read` takes a pipe one byte at a
 * time, which is why a frame counts its lines instead of being read in one go by another program.
 */
export function runnerScript(tag: string): string {
	const t = quote(tag);
	return [
		`printf '%s-ready\\n' ${t}`,
		`while IFS=' ' read -r id secs n; do`,
		`s=''; i=0`,
		// The newline inside the quotes is the one `read` took off the line.
		`while [ "$i" -lt "$n" ] && IFS= read -r l; do s="$s$l`,
		`"; i=$((i+1)); done`,
		`timeout --kill-after=${KILL_AFTER_S} "$secs" bash -c "$s" </dev/null & p=$!`,
		`printf '%s.%s-pid:%s\\n' ${t} "$id" "$p" >&2`,
		`wait "$p"; r=$?`,
		`printf '%s.%s-exit:%s\\n' ${t} "$id" "$r" >&2`,
		`printf '%s.%s-end\\n' ${t} "$id"`,
		`done`
	].join('\n');
}

/** One command as the runner reads it. */
export function runnerFrame(id: number, seconds: number, script: string): string {
	const lines = script.split('\n');
	return `${id} ${Math.max(1, Math.ceil(seconds))} ${lines.length}\n${lines.join('\n')}\n`;
}

/** The tag of a runner, when `command` is exactly the runner script (what the simulator recognises). */
export function runnerTagOf(command: string): string | undefined {
	const tag = /^printf '%s-ready\\n' '(flotilla-[0-9a-f]+)'\n/.exec(command)?.[1];
	return tag !== undefined && command === runnerScript(tag) ? tag : undefined;
}

/** Splits what a runner reads into frames, as the runner script does; for the simulator and tests. */
export class RunnerFrames {
	private buffer = '';

	push(text: string): { id: number; seconds: number; script: string }[] {
		this.buffer += text;
		const frames = [];
		for (;;) {
			const lines = this.buffer.split('\n');
			const [id, seconds, count] = (lines[0] ?? '').split(' ').map(Number);
			// A frame is whole once its header and all its lines (each ended by a newline) are in.
			if (count === undefined || lines.length < count + 2) return frames;
			frames.push({ id: id!, seconds: seconds!, script: lines.slice(1, count + 1).join('\n') });
			this.buffer = lines.slice(count + 1).join('\n');
		}
	}
}

/**
 * The command never reached the node (the runner could not start, or ended before the command was written): the
 * caller runs it otherwise. `started` tells whether a new runner is worth trying next time.
 */
export const RUNNER_UNAVAILABLE = Symbol('runner unavailable');

/**
 * The console's side of one runner channel. It runs one command at a time; `busy` tells the connection to
 * send a concurrent command through an exec of its own.
 */
export class Runner {
	private ready = false;
	private closed = false;
	private next = 1;
	private current: { watch: CommandWatch; ended: boolean } | undefined;
	private waitingForReady: (() => void) | undefined;
	private channel: ClientChannel | undefined;
	private readonly opened: Promise<ClientChannel | undefined>;

	constructor(
		opening: Promise<ClientChannel>,
		private readonly tag: string,
		private readonly hooks: Omit<WatchHooks, 'cut'>,
		private readonly onClose: () => void
	) {
		this.opened = opening.then(
			(channel) => this.attach(channel),
			() => {
				this.ended();
				return undefined;
			}
		);
	}

	private attach(channel: ClientChannel): ClientChannel {
		this.channel = channel;
		const out = new LineSplitter((line) => {
			if (!this.ready && line === `${this.tag}-ready`) {
				this.ready = true;
				return;
			}
			const c = this.current;
			if (c && c.watch.outLine(line)) {
				c.ended = true;
				this.settleIfOver();
			}
		});
		const err = new LineSplitter((line) => {
			this.current?.watch.errLine(line);
			this.settleIfOver();
		});
		channel.on('data', (chunk: Buffer) => out.push(chunk));
		channel.stderr.on('data', (chunk: Buffer) => err.push(chunk));
		channel.on('error', () => {});
		channel.on('close', () => {
			out.end();
			err.end();
			this.ended();
		});
		return channel;
	}

	private ended(): void {
		if (this.closed) return;
		this.closed = true;
		// Told first: a runner that never became ready makes its command run elsewhere, not fail.
		this.waitingForReady?.();
		const c = this.current;
		this.current = undefined;
		c?.watch.finish();
		this.onClose();
	}

	get busy(): boolean {
		return this.current !== undefined || this.closed;
	}

	/** It said `ready` once: the node can run it. */
	get started(): boolean {
		return this.ready;
	}

	get usable(): boolean {
		return !this.closed;
	}

	close(): void {
		this.channel?.close();
	}

	/** Over once both markers arrived: the exit status on stderr, the end on stdout (both streams drained). */
	private settleIfOver(): void {
		const c = this.current;
		if (!c || !c.ended || !c.watch.exited) return;
		this.current = undefined;
		c.watch.finish();
	}

	async run(script: string, deadlineMs: number, options: ExecOptions): Promise<ExecResult | typeof RUNNER_UNAVAILABLE> {
		const id = this.next++;
		const watch = new CommandWatch(`${this.tag}.${id}`, deadlineMs, options, {
			...this.hooks,
			// A command past its deadline and the backstop: the runner goes with it, the next command starts another.
			cut: () => this.close()
		});
		// Handled here too: when the runner turns out never to have started, nobody awaits this result (the command
		// runs elsewhere), and a connection lost meanwhile would reject it unheard.
		watch.result.catch(() => {});
		this.current = { watch, ended: false };
		const closedBeforeReady = this.ready
			? undefined
			: new Promise<boolean>((resolve) => {
					this.waitingForReady = () => resolve(!this.ready);
				});
		const channel = await this.opened;
		if (!channel || this.closed) {
			// Never written (the runner never opened, or ended just before): the command did not reach the node.
			watch.finish();
			return RUNNER_UNAVAILABLE;
		}
		channel.write(runnerFrame(id, deadlineMs / 1000, script));
		if (closedBeforeReady) {
			// Resolves when the command is over (or the channel closed) without waiting for `ready` itself.
			const neverReady = await Promise.race([closedBeforeReady, watch.result.then(() => false)]);
			if (neverReady) return RUNNER_UNAVAILABLE;
		}
		return watch.result;
	}
}
