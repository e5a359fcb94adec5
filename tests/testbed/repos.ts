/**
 * The testbed's code origins: one bare git repository per role, on the real filesystem below the testbed's
 * folder, which every host's mount namespace also sees at the same path. Hosts clone from them, so the Code
 * Sync flow runs real `git fetch` and `git checkout` against a real remote, and a test moves a role forward
 * by adding a commit here.
 *
 * Each origin holds a tiny app: `app.sh` (prints its version), `VERSION`, and `install.sh`, which Code Sync's
 * install step runs; it builds into `build/` (ignored by git, so an installed checkout is still clean).
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Commits made by the testbed carry this identity, whatever the machine's git configuration says. */
const gitEnv = {
	...process.env,
	GIT_AUTHOR_NAME: 'Flotilla testbed',
	GIT_AUTHOR_EMAIL: 'testbed@flotilla.invalid',
	GIT_COMMITTER_NAME: 'Flotilla testbed',
	GIT_COMMITTER_EMAIL: 'testbed@flotilla.invalid',
	GIT_CONFIG_NOSYSTEM: '1',
	GIT_CONFIG_GLOBAL: '/dev/null'
};

export async function git(args: string[]): Promise<string> {
	const { stdout } = await run('git', args, { env: gitEnv });
	return stdout.trim();
}

export interface Origin {
	role: string;
	/** The bare repository hosts fetch from (an absolute path, the same inside every host). */
	path: string;
	/** A working clone the testbed commits in and pushes from. */
	work: string;
}

export interface CommitChange {
	message?: string;
	/** Files to write (path relative to the repository → content); `install.sh` and `app.sh` stay executable. */
	files?: Record<string, string>;
}

function appFiles(role: string, version: number): Record<string, string> {
	return {
		VERSION: `${version}\n`,
		'app.sh': `#!/bin/sh\n# The ${role} app of the Flotilla testbed.\necho "${role} $(cat "$(dirname "$0")/VERSION")"\n`,
		'install.sh': [
			'#!/bin/sh',
			`# Installs the ${role} app from this checkout; Code Sync's install step runs it.`,
			'set -eu',
			'cd "$(dirname "$0")"',
			'mkdir -p build',
			'cp app.sh VERSION build/',
			'git rev-parse HEAD >build/REVISION',
			`echo "installed ${role} $(cat VERSION)"`,
			''
		].join('\n'),
		'.gitignore': '/build/\n'
	};
}

async function commit(origin: Origin, change: CommitChange): Promise<string> {
	for (const [file, content] of Object.entries(change.files ?? {})) {
		const path = join(origin.work, file);
		await mkdir(dirname(path), { recursive: true });
		await writeFile(path, content, { mode: /\.sh$/.test(file) ? 0o755 : 0o644 });
	}
	await git(['-C', origin.work, 'add', '--all']);
	await git(['-C', origin.work, 'commit', '--quiet', '--allow-empty', '-m', change.message ?? 'Change']);
	await git(['-C', origin.work, 'push', '--quiet', 'origin', 'HEAD:main']);
	return git(['-C', origin.work, 'rev-parse', 'HEAD']);
}

/** A bare origin for `role` with three commits (versions 1 to 3); hosts clone it at its latest. */
export async function createOrigin(dir: string, role: string): Promise<Origin> {
	const origin = { role, path: join(dir, 'origins', `${role}.git`), work: join(dir, 'origins', `${role}.work`) };
	await mkdir(origin.path, { recursive: true });
	await git(['init', '--quiet', '--bare', '--initial-branch=main', origin.path]);
	await git(['clone', '--quiet', origin.path, origin.work]);
	await git(['-C', origin.work, 'checkout', '--quiet', '-b', 'main']);
	for (const version of [1, 2, 3]) {
		await commit(origin, { message: `${role} ${version}`, files: appFiles(role, version) });
	}
	return origin;
}

/** Adds a commit to the origin (a new version of the app unless `change.files` says otherwise). */
export async function addCommit(origin: Origin, change: CommitChange = {}): Promise<string> {
	if (change.files) return commit(origin, change);
	const version = Number(await git(['-C', origin.work, 'show', 'HEAD:VERSION'])) + 1;
	return commit(origin, {
		message: change.message ?? `${origin.role} ${version}`,
		files: appFiles(origin.role, version)
	});
}

/** Every commit of the origin's main branch, oldest first. */
export async function originCommits(origin: Origin): Promise<string[]> {
	return (await git(['--git-dir', origin.path, 'rev-list', '--reverse', 'main'])).split('\n');
}

/** Clones the origin into `dir` (a host's /opt/<role> on the real filesystem), on its main branch. */
export async function cloneOrigin(origin: Origin, dir: string): Promise<void> {
	await git(['clone', '--quiet', origin.path, dir]);
}

/** The commit checked out in `dir`, read from the filesystem. */
export function checkedOutCommit(dir: string): Promise<string> {
	return git(['-C', dir, 'rev-parse', 'HEAD']);
}
