import { parseAnsi } from './ansi';

/** One line of a task's output as the run pages show it. */
export interface LogLine {
	/** out, err or engine (the console's own notes). */
	s: string;
	t: string;
	step?: string;
}

/** What an empty log says: a task that never ran (or has not yet) has no output to wait for. */
export function emptyLogText(state: string): string {
	switch (state) {
		case 'queued':
			return 'Waiting for its turn.';
		case 'running':
			return 'No output yet.';
		case 'skipped':
			return 'Skipped: nothing ran on this node.';
		default:
			return 'No output.';
	}
}

/**
 * Whether a line holds the text searched for (the run page's log search): case-insensitive, on the text as shown,
 * so colour codes in the raw output neither match nor split a word.
 */
export function lineMatches(line: LogLine, needle: string): boolean {
	const text = parseAnsi(line.t)
		.map((s) => s.text)
		.join('');
	return text.toLowerCase().includes(needle.toLowerCase());
}
