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
