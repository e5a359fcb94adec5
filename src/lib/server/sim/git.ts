import { hasEntries, makeDirectories, pathExists } from './files';
import type { CommandIO, HostModel } from './host';

/**
 * Git checkouts of a simulated node, answering the Code Sync flow's commands the way git answers them on a
 * testbed host (tests/testbed/repos.ts): the same command lines, outputs, errors and exit codes.
 *
 *   git -C <dir> rev-parse HEAD
 *   git -C <dir> status --porcelain
 *   git -C <dir> fetch --quiet origin
 *   git -C <dir> rev-parse --verify --quiet <sha>^{commit}
 *   git -C <dir> checkout --quiet --detach <sha>
 *   git clone --quiet -- <url> <dir>          (provisioning's first checkout, from HostModel.remotes)
 *   sh <dir>/install.sh
 */
export interface SimCommit {
	sha: string;
	/** The commit's install.sh exits 1, as a broken release would. */
	installFails?: boolean;
}

/** A role's origin, shared by every node that has a checkout of the role. */
export interface SimOrigin {
	role: string;
	/** The main branch, oldest first. */
	commits: SimCommit[];
}

export interface SimRepo {
	origin: SimOrigin;
	head: string;
	/** Commits this checkout has fetched so far. */
	known: Set<string>;
	/** `git status --porcelain` lines, e.g. ` M app.sh`; empty for a clean checkout. */
	dirty: string[];
}

export function newOrigin(role: string, commits: SimCommit[]): SimOrigin {
	return { role, commits };
}

/** A checkout cloned from the origin when it had its first `upTo` commits (all by default), at the last of those. */
export function cloneOrigin(origin: SimOrigin, upTo = origin.commits.length): SimRepo {
	const known = origin.commits.slice(0, upTo);
	const head = known.at(-1);
	if (!head) throw new Error(`The ${origin.role} origin has no commit to clone`);
	return { origin, head: head.sha, known: new Set(known.map((c) => c.sha)), dirty: [] };
}

export async function git(args: string[], io: CommandIO, model: HostModel): Promise<number> {
	if (args[0] === 'clone') return clone(args.slice(1), io, model);
	if (args[0] !== '-C' || args.length < 3) {
		await io.err(`git: the simulator runs git only as 'git -C <dir> …' (got 'git ${args.join(' ')}')`);
		return 1;
	}
	const dir = args[1]!;
	const rest = args.slice(2).join(' ');
	const repo = model.repos.get(dir);
	if (!repo) {
		await io.err(`fatal: cannot change to '${dir}': No such file or directory`);
		return 128;
	}
	if (rest === 'rev-parse HEAD') {
		await io.out(repo.head);
		return 0;
	}
	if (rest === 'status --porcelain') {
		for (const line of repo.dirty) await io.out(line);
		return 0;
	}
	if (rest === 'fetch --quiet origin') {
		for (const commit of repo.origin.commits) repo.known.add(commit.sha);
		return 0;
	}
	// Whether the checkout holds a commit: its id when it does, nothing and exit 1 when not.
	const verify = /^rev-parse --verify --quiet ([0-9a-f]{40})\^\{commit\}$/.exec(rest);
	if (verify) {
		if (!repo.known.has(verify[1]!)) return 1;
		await io.out(verify[1]!);
		return 0;
	}
	const checkout = /^checkout --quiet --detach ([0-9a-f]{40})$/.exec(rest);
	if (checkout) {
		if (!repo.known.has(checkout[1]!)) {
			await io.err(`fatal: reference is not a tree: ${checkout[1]}`);
			return 128;
		}
		repo.head = checkout[1]!;
		return 0;
	}
	await io.err(`git: the simulator does not run 'git ${args.join(' ')}'`);
	return 1;
}

/**
 * `git clone [--quiet] [--] <url> <dir>`: a checkout of the remote's main branch at its last commit, in a
 * directory that is new or empty (its parents made as needed), as git does.
 */
async function clone(args: string[], io: CommandIO, model: HostModel): Promise<number> {
	const quiet = args.includes('--quiet') || args.includes('-q');
	const operands = args.filter((a) => !['--quiet', '-q', '--'].includes(a));
	const [url, dir, ...rest] = operands;
	if (!url || !dir || rest.length || operands.some((a) => a.startsWith('-'))) {
		await io.err(
			`git: the simulator clones only as 'git clone --quiet -- <url> <dir>' (got 'git clone ${args.join(' ')}')`
		);
		return 129;
	}
	if (pathExists(model, dir) && (model.repos.has(dir) || model.files.has(dir) || hasEntries(model, dir))) {
		await io.err(`fatal: destination path '${dir}' already exists and is not an empty directory.`);
		return 128;
	}
	const origin = model.remotes.get(url);
	if (!quiet) await io.err(`Cloning into '${dir}'...`);
	if (!origin) {
		await io.err(`fatal: repository '${url}' does not exist`);
		return 128;
	}
	if (!makeDirectories(model, dir)) {
		await io.err(`fatal: could not create work tree dir '${dir}': Not a directory`);
		return 128;
	}
	model.repos.set(dir, cloneOrigin(origin));
	return 0;
}

/** `sh <dir>/install.sh`: the testbed app's installer prints `installed <role> <version>`. */
export async function install(script: string, io: CommandIO, model: HostModel): Promise<number> {
	const dir = script.replace(/\/install\.sh$/, '');
	const repo = model.repos.get(dir);
	if (!repo || dir === script) {
		await io.err(`sh: 0: cannot open ${script}: No such file`);
		return 2;
	}
	const index = repo.origin.commits.findIndex((c) => c.sha === repo.head);
	if (repo.origin.commits[index]?.installFails) {
		await io.err(`install.sh: ${repo.origin.role} ${index + 1} does not install`);
		return 1;
	}
	await io.out(`installed ${repo.origin.role} ${index + 1}`);
	return 0;
}
