/** One line of a task's output as the run pages show it. */
export interface LogLine {
	/** out, err or engine (the console's own notes). */
	s: string;
	t: string;
	step?: string;
}
