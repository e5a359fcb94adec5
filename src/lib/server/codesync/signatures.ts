import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, desc, eq, isNotNull } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeCommits, type CodeRole } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';
import { anyExit } from './health';

const run = promisify(execFile);

/**
 * Signed commits and tags (docs/code-sync.md, "Signed commits and tags"). A role with `signatures` deploys a
 * target only when git itself verifies it against the role's allowed signers (SSH keys) or OpenPGP keys: for a
 * `git` role on the node, after the fetch and before the switch, with files the console writes there; for a
 * `push` role in the console's own checkout, before anything is uploaded. A role that follows tags has its tag
 * verified (and the tag must name the target); a target no notified tag names has its commit verified. OpenPGP
 * keys are imported into a throwaway GNUPGHOME for each check, so that only the role's keys count, never a
 * keyring the node (or the console) already has.
 */

/** Where a git role's allowed signers file lives on the node: inside `.git`, so the checkout stays clean. */
export function allowedSignersFile(role: Pick<CodeRole, 'path'>): string {
	return `${role.path}/.git/flotilla-allowed-signers`;
}

/** Where a git role's OpenPGP keys live on the node, beside its allowed signers. */
export function openpgpKeysFile(role: Pick<CodeRole, 'path'>): string {
	return `${role.path}/.git/flotilla-openpgp-keys.asc`;
}

const sshSigners = (role: CodeRole) => role.signatures?.allowed_signers ?? [];
const openpgpKeys = (role: CodeRole) => role.signatures?.openpgp_keys ?? [];

/** git's configuration for an SSH signature check against `file`; none when the role lists no SSH signers. */
const sshConfig = (role: CodeRole, file: string) =>
	sshSigners(role).length ? ['-c', 'gpg.format=ssh', '-c', `gpg.ssh.allowedSignersFile=${file}`] : [];

/** The tag a notification named for this commit, for a role that follows tags; null otherwise. */
async function tagFor(role: CodeRole, target: string): Promise<string | null> {
	if (!role.followTags) return null;
	const [row] = await db()
		.select({ tag: codeCommits.tag })
		.from(codeCommits)
		.where(and(eq(codeCommits.role, role.name), eq(codeCommits.commit, target), isNotNull(codeCommits.tag)))
		.orderBy(desc(codeCommits.id))
		.limit(1);
	return row?.tag ?? null;
}

/** git's words for why a signature does not verify: its last line that says something. */
function why(stderr: string, exitCode: number | null): string {
	const lines = stderr
		.split('\n')
		.map((l) => l.trim())
		.filter(Boolean);
	// git says nothing at all about a commit or tag that carries no signature.
	return lines.at(-1) ?? (exitCode === 1 ? 'no signature found' : `git exited with ${exitCode}`);
}

function refused(role: CodeRole, what: string, reason: string): StepFailed {
	return new StepFailed(`${role.name}: ${what} is not signed by an allowed signer (${reason}); nothing was changed`);
}

/** Writes `content` to `file` on the node beside it and renames it over (git never reads half a list), or removes it. */
function writeOrRemove(file: string, content: string[]): ShellCommand {
	if (!content.length) return sh`rm -f -- ${file}`;
	return sh`printf '%s\n' ${content} > ${`${file}.new`} && mv -f -- ${`${file}.new`} ${file}`;
}

/**
 * `git <args>` in the role's checkout with its signers: with OpenPGP keys, under a GNUPGHOME made for this check
 * alone (the keys imported from their file, then the directory and any agent gpg started for it removed on exit).
 */
function gitVerifying(role: CodeRole, args: string[]): ShellCommand {
	const git = sh`git -C ${role.path} ${sshConfig(role, allowedSignersFile(role))} ${args}`;
	if (!openpgpKeys(role).length) return git;
	return sh`home=$(mktemp -d) && trap 'gpgconf --homedir "$home" --kill all >/dev/null 2>&1; rm -rf -- "$home"' EXIT && gpg --homedir "$home" --batch --quiet --import ${openpgpKeysFile(role)} && GNUPGHOME="$home" ${git}`;
}

/** On the node, after the fetch: writes the role's signers, then `git verify-tag` or `git verify-commit`. */
export async function verifyOnNode(ctx: StepContext<unknown>, role: CodeRole, target: string): Promise<void> {
	if (!role.signatures) return;
	await ctx.exec(
		sh`${writeOrRemove(allowedSignersFile(role), sshSigners(role))} && ${writeOrRemove(openpgpKeysFile(role), openpgpKeys(role))}`,
		{ deadlineMs: 30_000 }
	);
	const tag = await tagFor(role, target);
	const exec = anyExit(ctx);
	if (tag) {
		const ref = `refs/tags/${tag}`;
		const named = await exec(sh`git -C ${role.path} rev-parse --verify --quiet ${`${ref}^{commit}`}`, {
			deadlineMs: 30_000
		});
		if (named.exitCode !== 0 || !named.stdout.trim().startsWith(target)) {
			throw refused(role, `tag ${tag}`, `the node's tag ${tag} does not name ${target.slice(0, 12)}`);
		}
		const r = await exec(gitVerifying(role, ['verify-tag', ref]), { deadlineMs: 60_000 });
		if (r.exitCode !== 0) throw refused(role, `tag ${tag}`, why(r.stderr, r.exitCode));
		ctx.log(`${role.name}: tag ${tag} (${target.slice(0, 12)}) is signed by an allowed signer`);
		return;
	}
	const r = await exec(gitVerifying(role, ['verify-commit', target]), { deadlineMs: 60_000 });
	if (r.exitCode !== 0) throw refused(role, `commit ${target.slice(0, 12)}`, why(r.stderr, r.exitCode));
	ctx.log(`${role.name}: commit ${target.slice(0, 12)} is signed by an allowed signer`);
}

/** For a push role: the same checks in the console's own checkout, before the release is uploaded. */
export async function verifyInConsole(ctx: StepContext<unknown>, role: CodeRole, source: string, full: string) {
	if (!role.signatures) return;
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-signers-'));
	// The role's OpenPGP keys in a keyring of their own (mode 700, as gpg wants its home).
	const home = join(dir, 'gnupg');
	try {
		const file = join(dir, 'allowed_signers');
		await writeFile(
			file,
			sshSigners(role)
				.map((l) => `${l}\n`)
				.join(''),
			{ mode: 0o600 }
		);
		let env: NodeJS.ProcessEnv | undefined;
		if (openpgpKeys(role).length) {
			await mkdir(home, { mode: 0o700 });
			const keys = join(dir, 'openpgp-keys.asc');
			await writeFile(
				keys,
				openpgpKeys(role)
					.map((k) => `${k}\n`)
					.join(''),
				{ mode: 0o600 }
			);
			try {
				await run('gpg', ['--homedir', home, '--batch', '--quiet', '--import', keys], { timeout: 30_000 });
			} catch (err) {
				const e = err as { stderr?: string; code?: number | null };
				throw refused(role, `commit ${full.slice(0, 12)}`, `its OpenPGP keys: ${why(e.stderr ?? '', e.code ?? null)}`);
			}
			env = { ...process.env, GNUPGHOME: home };
		}
		const config = sshConfig(role, file);
		const tag = await tagFor(role, full);
		const git = async (args: string[]) => {
			try {
				await run('git', ['-C', source, ...config, ...args], { timeout: 30_000, env });
				return null;
			} catch (err) {
				const e = err as { stderr?: string; code?: number | null };
				return why(e.stderr ?? '', e.code ?? null);
			}
		};
		if (tag) {
			const ref = `refs/tags/${tag}`;
			const named = await run('git', ['-C', source, 'rev-parse', '--verify', '--quiet', `${ref}^{commit}`]).then(
				(r) => r.stdout.trim(),
				() => ''
			);
			if (named !== full)
				throw refused(role, `tag ${tag}`, `the console's tag ${tag} does not name ${full.slice(0, 12)}`);
			const problem = await git(['verify-tag', ref]);
			if (problem) throw refused(role, `tag ${tag}`, problem);
			ctx.log(
				`${role.name}: tag ${tag} (${full.slice(0, 12)}) is signed by an allowed signer (checked by the console)`
			);
			return;
		}
		const problem = await git(['verify-commit', full]);
		if (problem) throw refused(role, `commit ${full.slice(0, 12)}`, problem);
		ctx.log(`${role.name}: commit ${full.slice(0, 12)} is signed by an allowed signer (checked by the console)`);
	} finally {
		if (openpgpKeys(role).length) await run('gpgconf', ['--homedir', home, '--kill', 'all']).catch(() => {});
		await rm(dir, { recursive: true, force: true });
	}
}
