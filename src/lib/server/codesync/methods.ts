import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CodeRole } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import { uploadFile } from '$lib/server/ssh/sftp';
import { readCommitFile, runCommand, writeCommitFile } from './commands';
import { recordCommitCheck } from './commit-checks';
import { anyExit, type Exec } from './health';
import { verifyInConsole } from './signatures';

const run = promisify(execFile);

/**
 * How a role's code gets onto a node. `git`: the node has a checkout and fetches from its own remote.
 * `push`: the console archives its own checkout of the role and uploads it as `releases/<commit>`, and a
 * `current` symlink, switched atomically, says which release runs.
 */
export interface DeployMethod {
	/**
	 * The commit the node runs for the role, or null when it has none yet. Takes a bare `exec` (any exit
	 * status returns) so that the health sweep can ask too; a copy that cannot be read throws.
	 */
	current(exec: Exec, role: CodeRole): Promise<string | null>;
	/**
	 * Before an update, in one command: the commit the node runs (as `current`), and why the node's copy
	 * must not be touched (local changes), or null.
	 */
	survey(ctx: StepContext<unknown>, role: CodeRole): Promise<{ current: string | null; dirty: string | null }>;
	/** Makes `target` available on the node; returns the full commit id. */
	fetch(ctx: StepContext<unknown>, role: CodeRole, target: string): Promise<string>;
	/** Switches the role to `target`; returns the full commit the node now runs. */
	switchTo(ctx: StepContext<unknown>, role: CodeRole, target: string): Promise<string>;
	/** Puts the role back on `previous` (null: no release before this one). */
	switchBack(ctx: StepContext<unknown>, role: CodeRole, previous: string | null): Promise<void>;
}

const gitMethod: DeployMethod = {
	async current(exec, role) {
		const r = await exec(sh`git -C ${role.path} rev-parse HEAD`);
		if (r.exitCode !== 0) {
			const why = r.stderr.trim().split('\n').at(-1) ?? `exit ${r.exitCode}`;
			throw new StepFailed(`${role.name}: ${role.path} is not a git checkout (${why})`);
		}
		return r.stdout.trim() || null;
	},
	async survey(ctx, role) {
		// One command instead of two: every command is a round trip and a few processes on the node.
		const r = await ctx.exec(sh`git -C ${role.path} rev-parse HEAD && git -C ${role.path} status --porcelain`);
		const [head = '', ...status] = r.stdout.split('\n');
		const changed = status.filter((l) => l.trim()).length;
		return {
			current: head.trim() || null,
			dirty: changed ? `${role.path} has ${changed} uncommitted change${changed === 1 ? '' : 's'} (dirty tree)` : null
		};
	},
	async fetch(ctx, role, target) {
		// A role whose tags are verified needs them even when they name a commit the node already has.
		const tags = role.followTags && role.signatures ? ['--tags'] : [];
		// In the same command, whether the fetched repository holds the target: recorded for the plan, which then
		// warns of a commit the node's remote lacks (commit-checks.ts). As in `missingInConsole`: `--quiet` makes
		// exit 1 with no error said mean "no such commit"; a fetch that fails says `error:` or `fatal:`.
		const r = await ctx.exec(
			sh`git -C ${role.path} fetch --quiet ${tags} origin && git -C ${role.path} rev-parse --verify --quiet ${`${target}^{commit}`} >/dev/null`,
			{ okExitCodes: [0, 1] }
		);
		const failed = r.stderr.split('\n').filter((l) => /^(error|fatal):/.test(l));
		if (r.exitCode === 1 && failed.length) throw new StepFailed(`exited with 1: ${failed.at(-1)}`, 1);
		await recordCommitCheck(ctx.node.id, role.name, target, r.exitCode === 0);
		if (r.exitCode === 1) ctx.log(`${role.name}: ${target} is not in the fetched repository`);
		return target;
	},
	async switchTo(ctx, role, target) {
		const head = (
			await ctx.exec(sh`git -C ${role.path} checkout --quiet --detach ${target} && git -C ${role.path} rev-parse HEAD`)
		).stdout.trim();
		if (!head.startsWith(target)) throw new StepFailed(`${role.name}: HEAD is ${head} after checking out ${target}`);
		return head;
	},
	async switchBack(ctx, role, previous) {
		if (!previous) throw new StepFailed(`${role.name}: no recorded commit to go back to`);
		await ctx.exec(sh`git -C ${role.path} checkout --quiet --detach ${previous}`);
	}
};

/**
 * Why the console's checkout of a push role cannot deploy `commit` (it is not there, or the checkout cannot be
 * read), or null when it holds it: the plan flags such a target before anyone confirms an update.
 */
export async function missingInConsole(role: Pick<CodeRole, 'sourceRepo'>, commit: string): Promise<string | null> {
	const source = role.sourceRepo;
	if (!source) return 'the role has no console checkout (source_repo)';
	try {
		await run('git', ['-C', source, 'rev-parse', '--verify', '--quiet', `${commit}^{commit}`], { timeout: 30_000 });
		return null;
	} catch (err) {
		const e = err as { code?: number | string | null; stderr?: string };
		// --quiet: exit 1 with nothing said is "no such commit"; anything else is a checkout git cannot read.
		if (e.code === 1 && !e.stderr?.trim()) return `not in the console's checkout ${source}`;
		const said = e.stderr?.trim().split('\n').at(-1) ?? String(e.code);
		return `the console's checkout ${source} cannot be read (${said})`;
	}
}

const RELEASE_LINK = /releases\/([0-9a-f]{4,64})\/?$/;

const pushMethod: DeployMethod = {
	async current(exec, role) {
		const r = await exec(sh`readlink -- ${`${role.path}/current`}`);
		return r.exitCode === 0 ? (RELEASE_LINK.exec(r.stdout.trim())?.[1] ?? null) : null;
	},
	async survey(ctx, role) {
		// Releases are unpacked by the console and never edited in place: nothing to protect.
		return { current: await pushMethod.current(anyExit(ctx), role), dirty: null };
	},
	async fetch(ctx, role, target) {
		const source = role.sourceRepo;
		if (!source) throw new StepFailed(`${role.name}: a push role needs the console's checkout (source_repo)`);
		let full: string;
		try {
			full = (await run('git', ['-C', source, 'rev-parse', '--verify', '--quiet', `${target}^{commit}`])).stdout.trim();
		} catch {
			throw new StepFailed(`${role.name}: commit ${target} is not in the console's checkout ${source}`);
		}
		// Before the upload: an unsigned release never reaches the node.
		await verifyInConsole(ctx, role, source, full);
		const release = `${role.path}/releases/${full}`;
		const present = await ctx.exec(sh`test -d ${release}`, { okExitCodes: [0, 1] });
		if (present.exitCode === 0) {
			ctx.log(`${role.name}: release ${full.slice(0, 12)} is already on the node`);
			return full;
		}
		const dir = await mkdtemp(join(tmpdir(), 'flotilla-push-'));
		try {
			const tarball = join(dir, `${full}.tar`);
			await run('git', ['-C', source, 'archive', '--format=tar', '-o', tarball, full]);
			const incoming = `${role.path}/releases/.incoming-${full}.tar`;
			const unpacking = `${role.path}/releases/.unpacking-${full}`;
			await ctx.exec(sh`mkdir -p -- ${`${role.path}/releases`}`);
			const sent = await uploadFile(ctx.ssh, tarball, incoming);
			ctx.log(`${role.name}: uploaded ${sent.bytes} bytes, sha256 ${sent.sha256.slice(0, 16)}… verified on the node`);
			// Unpacked beside the final name and renamed, so a release directory is complete or absent.
			await ctx.exec(
				sh`rm -rf -- ${unpacking} && mkdir -- ${unpacking} && tar -xf ${incoming} -C ${unpacking} && mv -T -- ${unpacking} ${release} && rm -f -- ${incoming}`
			);
		} finally {
			await rm(dir, { recursive: true, force: true });
		}
		return full;
	},
	async switchTo(ctx, role, target) {
		await link(ctx, role, target);
		return target;
	},
	async switchBack(ctx, role, previous) {
		if (previous) await link(ctx, role, previous);
		else await ctx.exec(sh`rm -f -- ${`${role.path}/current`}`);
	}
};

/** Points `current` at a release by renaming a new symlink over it: readers see the old or the new, never none. */
async function link(ctx: StepContext<unknown>, role: CodeRole, commit: string): Promise<void> {
	const next = `${role.path}/.current-${commit}`;
	await ctx.exec(
		sh`test -d ${`${role.path}/releases/${commit}`} && ln -sfn -- ${`releases/${commit}`} ${next} && mv -T -- ${next} ${`${role.path}/current`}`
	);
}

/**
 * `commands` (./commands.ts): fetch is the role's pull, switch its switch, and going back its rollback. Its
 * backup, migrate and smoke are steps of their own in the release flows (flow.ts, `deployFlow`).
 */
const commandsMethod: DeployMethod = {
	current: (exec, role) => readCommitFile(exec, role),
	async survey(ctx, role) {
		return { current: await readCommitFile(anyExit(ctx), role), dirty: null };
	},
	async fetch(ctx, role, target) {
		await runCommand(ctx, role, 'pull', { target, previous: await readCommitFile(anyExit(ctx), role) });
		return target;
	},
	async switchTo(ctx, role, target) {
		const previous = await readCommitFile(anyExit(ctx), role);
		await runCommand(ctx, role, 'switch', { target, previous });
		await writeCommitFile(ctx, role, target);
		return target;
	},
	async switchBack(ctx, role, previous) {
		const target = (await readCommitFile(anyExit(ctx), role)) ?? previous ?? '';
		if (!(await runCommand(ctx, role, 'rollback', { target, previous }))) {
			throw new StepFailed(`${role.name}: no rollback command to go back with`);
		}
		await writeCommitFile(ctx, role, previous);
	}
};

export function methodFor(role: Pick<CodeRole, 'method'>): DeployMethod {
	if (role.method === 'commands') return commandsMethod;
	return role.method === 'push' ? pushMethod : gitMethod;
}
