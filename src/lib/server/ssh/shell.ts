/**
 * The one way a command for a node is built. A remote command is a `ShellCommand`, and the only way to
 * make one is the `sh` template tag, which single-quotes every interpolated value. So there is no code
 * path where a user's string is concatenated into a command line: the type system refuses plain strings.
 *
 *   sh`git -C ${dir} checkout --detach ${commit}`   →   git -C '/opt/app' checkout --detach 'a1b2c3…'
 *
 * Quoting stops a value from being read as shell syntax; it does not stop a value that starts with `-`
 * from being read as an option by the program. Values are therefore validated first (src/lib/schemas/
 * remote.ts refuses leading dashes), and commands put `--` before operands where the program allows it.
 */
declare const shellCommand: unique symbol;

export interface ShellCommand {
	readonly script: string;
	readonly [shellCommand]: true;
}

/** A fragment written by the console itself (never from input), spliced in without quoting. */
export interface TrustedFragment {
	readonly trusted: string;
}

export type ShellValue = string | number | ShellCommand | TrustedFragment | readonly (string | number)[];

/** POSIX single quoting: everything inside is literal; a `'` is closed, escaped and reopened. */
export function quote(value: string): string {
	if (value.includes('\0')) throw new Error('A shell argument cannot contain a NUL byte');
	return `'${value.replaceAll("'", `'\\''`)}'`;
}

function render(value: ShellValue): string {
	if (typeof value === 'number') {
		if (!Number.isFinite(value)) throw new Error(`Not a finite number: ${value}`);
		return String(value);
	}
	if (typeof value === 'string') return quote(value);
	if ('script' in value) return value.script;
	if ('trusted' in value) return value.trusted;
	return value.map((v) => render(v)).join(' ');
}

function make(script: string): ShellCommand {
	return { script } as ShellCommand;
}

export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): ShellCommand {
	let script = strings[0]!;
	values.forEach((value, i) => {
		script += render(value) + strings[i + 1]!;
	});
	return make(script);
}

/** Marks a constant fragment of shell syntax as the console's own. Never pass input here. */
export function trusted(fragment: string): TrustedFragment {
	return { trusted: fragment };
}

/**
 * Wraps a command so the node itself enforces the deadline: `timeout` sends TERM at the deadline and
 * KILL a few seconds later, so nothing is left running even if the SSH channel is gone by then.
 * The command runs in `bash -c` so that pipes and `&&` in console-written commands keep working.
 */
export function withDeadline(command: ShellCommand, seconds: number, killAfterSeconds = 5): ShellCommand {
	const secs = Math.max(1, Math.ceil(seconds));
	return sh`timeout --kill-after=${killAfterSeconds} ${secs} bash -c ${command.script}`;
}

/**
 * Ends the process group `pid` leads: TERM, then KILL for whatever is still there after `graceSeconds`. The group
 * is watched every 0.1 s, so a command that stops at once is done at once; `timeout` bounds the watch by the clock,
 * since a count of polls stretches on a loaded node (each poll forks a `sleep`). bash, as dash's `kill` takes no `--`.
 */
export function killGroupCommand(pid: number, graceSeconds: number): ShellCommand {
	const watch = `while kill -0 -- -${pid} 2>/dev/null; do sleep 0.1; done`;
	return sh`kill -TERM -- -${pid} 2>/dev/null; timeout ${String(graceSeconds)} bash -c ${watch}; kill -KILL -- -${pid} 2>/dev/null; true`;
}
