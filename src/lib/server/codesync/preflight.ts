import { dirname } from 'node:path';
import type { CodeRole, DeployCommand } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import { anyExit, workDir } from './health';

/**
 * Pre-flight and quiesce (docs/code-sync.md, "Pre-flight and quiesce"): the role's own programs say whether a
 * node may be updated now, the console archives what the role has before switching it, and the role is told
 * to stop its work before the restart and to pick it up after. Every program runs as argv in the role's
 * folder under its own deadline, which the node enforces (the whole process group dies at it).
 */

/** Why the node is not ready (the readiness command's output), or null when it is (or the role has none). */
export async function checkReadiness(ctx: StepContext<unknown>, role: CodeRole): Promise<string | null> {
	const check = role.readinessCheck;
	if (!check) return null;
	let r;
	try {
		r = await anyExit(ctx)(sh`cd -- ${workDir(role)} && ${check.argv}`, { deadlineMs: check.deadline_seconds * 1000 });
	} catch (err) {
		if (err instanceof StepFailed) return `readiness check ${err.message}`;
		throw err;
	}
	if (r.exitCode === 0) {
		ctx.log(`${role.name}: ready (${check.argv.join(' ')})`);
		return null;
	}
	const said = `${r.stdout}\n${r.stderr}`
		.split('\n')
		.map((l) => l.trim())
		.filter(Boolean)
		.join(' / ')
		.slice(0, 500);
	return `not ready: ${check.argv.join(' ')} exited with ${r.exitCode}${said ? `: ${said}` : ''}`;
}

/** The role's snapshots: `backups/<role>/` beside the role's folder, so a git checkout stays clean. */
export function snapshotDir(role: Pick<CodeRole, 'name' | 'path'>): string {
	const parent = dirname(role.path);
	return `${parent === '/' ? '' : parent}/backups/${role.name}`;
}

/** A name that sorts by time, to the millisecond, without characters a shell or tar would read. */
function stamp(now = new Date()): string {
	return now.toISOString().replace(/[:.]/g, '-');
}

const SNAPSHOT_NAME = /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z\.tar\.gz$/;

/**
 * Archives the role's folder and data paths to `backups/<role>/<timestamp>.tar.gz` (written beside and renamed,
 * so a snapshot is whole or absent), then removes all but the newest `keep`. Returns the snapshot's path.
 */
export async function takeSnapshot(ctx: StepContext<unknown>, role: CodeRole): Promise<string | null> {
	const snapshot = role.snapshot;
	if (!snapshot) return null;
	const dir = snapshotDir(role);
	const file = `${dir}/${stamp()}.tar.gz`;
	// Relative to /, so that a restore with `tar -xzf "$FLOTILLA_SNAPSHOT" -C /` puts each path back where it was.
	const paths = [role.path, ...snapshot.data_paths].map((p) => p.slice(1));
	await ctx.exec(
		sh`mkdir -p -- ${dir} && tar -czf ${`${file}.partial`} -C / -- ${paths} && mv -f -- ${`${file}.partial`} ${file}`,
		{ deadlineMs: snapshot.deadline_seconds * 1000 }
	);
	ctx.log(`${role.name}: snapshot ${file} (${[role.path, ...snapshot.data_paths].join(', ')})`);
	const listed = await ctx.exec(sh`ls -1 -- ${dir}`);
	const old = listed.stdout
		.split('\n')
		.filter((n) => SNAPSHOT_NAME.test(n))
		.sort()
		.reverse()
		.slice(snapshot.keep);
	if (old.length) {
		await ctx.exec(sh`rm -f -- ${old.map((n) => `${dir}/${n}`)}`);
		ctx.log(
			`${role.name}: removed ${old.length} older snapshot${old.length === 1 ? '' : 's'} (keeping ${snapshot.keep})`
		);
	}
	return file;
}

/** On a rollback: the role's restore command, given the snapshot taken before this update's switch. */
export async function restoreSnapshot(ctx: StepContext<unknown>, role: CodeRole, file: string): Promise<void> {
	const restore = role.snapshot?.restore_command ?? [];
	if (!restore.length) {
		ctx.log(`${role.name}: no restore command, so snapshot ${file} stays on the node unused`);
		return;
	}
	await ctx.exec(sh`cd -- ${workDir(role)} && env ${`FLOTILLA_SNAPSHOT=${file}`} ${restore}`, {
		deadlineMs: (role.snapshot?.deadline_seconds ?? 600) * 1000
	});
	ctx.log(`${role.name}: restored snapshot ${file} (${restore.join(' ')})`);
}

async function runTimed(ctx: StepContext<unknown>, role: CodeRole, what: string, command: DeployCommand) {
	ctx.log(`${role.name}: ${what}: ${command.argv.join(' ')} (deadline ${command.deadline_seconds} s)`);
	try {
		await ctx.exec(sh`cd -- ${workDir(role)} && env ${`FLOTILLA_ROLE=${role.name}`} ${command.argv}`, {
			deadlineMs: command.deadline_seconds * 1000
		});
	} catch (err) {
		if (err instanceof StepFailed) throw new StepFailed(`${role.name}: ${what} ${err.message}`, err.exitCode);
		throw err;
	}
}

export async function quiesce(ctx: StepContext<unknown>, role: CodeRole): Promise<void> {
	if (role.quiesce) await runTimed(ctx, role, 'quiesce', role.quiesce.quiesce);
}

export async function resume(ctx: StepContext<unknown>, role: CodeRole): Promise<void> {
	if (role.quiesce) await runTimed(ctx, role, 'resume', role.quiesce.resume);
}
