import { recordEvent } from './events';

const FLUSH_MS = 100;
const MAX_LINE = 2_000;
/** A chatty command must not flood the database or the browser: past this, lines are counted, not kept. */
const MAX_LINES_PER_TASK = 20_000;

/**
 * Collects a task's output lines and writes them as one `task.output` event per 100 ms, so that a command
 * printing thousands of lines a second costs ten small inserts a second, not thousands.
 */
export class TaskOutput {
	private lines: { s: 'out' | 'err' | 'engine'; t: string }[] = [];
	private step: string | null = null;
	private timer: NodeJS.Timeout | undefined;
	private kept = 0;
	private dropped = 0;

	constructor(private readonly ids: { runId: string; taskId: string; nodeId: string }) {}

	setStep(step: string | null): void {
		if (step !== this.step) void this.flush();
		this.step = step;
	}

	add(stream: 'out' | 'err' | 'engine', line: string): void {
		if (this.kept >= MAX_LINES_PER_TASK) {
			this.dropped++;
			return;
		}
		this.kept++;
		this.lines.push({ s: stream, t: line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line });
		this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
	}

	flush(): Promise<void> {
		clearTimeout(this.timer);
		this.timer = undefined;
		if (!this.lines.length) return Promise.resolve();
		const lines = this.lines;
		this.lines = [];
		return recordEvent({ type: 'task.output', ...this.ids, data: { step: this.step, lines } });
	}

	/**
	 * Writes what is left, with a note of how many lines were dropped. Awaited before the task's end is
	 * written, so that a client that sees a task end has every line of its log.
	 */
	close(): Promise<void> {
		if (this.dropped) {
			this.lines.push({ s: 'engine', t: `… ${this.dropped} more output lines not kept` });
			this.dropped = 0;
		}
		return this.flush();
	}
}
