import type { CodeRole, DeployCommands } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import type { Exec } from './health';

/**
 * The `commands` deploy method (docs/releases.md, "The commands method"): the role's own programs do the
 * update — backup, pull, migrate, smoke, switch — and `rollback` undoes it. Each runs in the role's folder as
 * argv (every argument quoted) under its own deadline, which the node enforces, with the commits in its
 * environment. What the node runs is kept by the console in a file of the role's folder, written after the
 * switch and put back by the rollback: the programs need not report it.
 */

export type CommandName = Exclude<keyof DeployCommands, 'rollback'> | 'rollback';

/** The commit file the console keeps in the role's folder. */
export function commitFile(role: Pick<CodeRole, 'path'>): string {
	return `${role.path}/.flotilla-commit`;
}

export async function readCommitFile(exec: Exec, role: CodeRole): Promise<string | null> {
	const r = await exec(sh`cat -- ${commitFile(role)}`);
	const commit = r.stdout.trim();
	return r.exitCode === 0 && /^[0-9a-f]{4,64}$/.test(commit) ? commit : null;
}

/** Written beside and renamed over: the file names the old commit or the new one, never half of one. */
export async function writeCommitFile(ctx: StepContext<unknown>, role: CodeRole, commit: string | null): Promise<void> {
	const file = commitFile(role);
	if (!commit) {
		await ctx.exec(sh`rm -f -- ${file}`);
		return;
	}
	await ctx.exec(sh`printf '%s\n' ${commit} > ${`${file}.new`} && mv -f -- ${`${file}.new`} ${file}`);
}

/**
 * Runs one of the role's commands; false when the role has none of that name (only `rollback` may be absent).
 * `FLOTILLA_COMMIT` is the commit the update goes to, `FLOTILLA_PREVIOUS_COMMIT` the one the node ran (empty
 * when none), `FLOTILLA_ROLE` the role.
 */
export async function runCommand(
	ctx: StepContext<unknown>,
	role: CodeRole,
	name: CommandName,
	commits: { target: string; previous: string | null }
): Promise<boolean> {
	const command = role.commands?.[name];
	if (!command) return false;
	ctx.log(`${role.name}: ${name}: ${command.argv.join(' ')} (deadline ${command.deadline_seconds} s)`);
	try {
		await ctx.exec(
			sh`cd -- ${role.path} && env ${`FLOTILLA_ROLE=${role.name}`} ${`FLOTILLA_COMMIT=${commits.target}`} ${`FLOTILLA_PREVIOUS_COMMIT=${commits.previous ?? ''}`} ${command.argv}`,
			{ deadlineMs: command.deadline_seconds * 1000 }
		);
	} catch (err) {
		// The step's error names the role and the command, as the runbook's "fails at migrate" does.
		if (err instanceof StepFailed) throw new StepFailed(`${role.name}: ${name} ${err.message}`, err.exitCode);
		throw err;
	}
	return true;
}
