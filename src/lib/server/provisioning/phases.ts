import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { methodFor } from '$lib/server/codesync/methods';
import { anyExit } from '$lib/server/codesync/health';
import type { CodeRole, RoleProvisioning } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';
import { uploadFile } from '$lib/server/ssh/sftp';
import { envFileOf, openSecrets, serviceUserOf } from './definitions';
import { renderTemplate } from './render';

/**
 * The remote work of provisioning's phases (docs/provisioning.md), shared by the provisioning flow and by
 * Code Sync's update. Each one looks before it acts and changes only what differs, so running it again
 * changes nothing, and each returns whether it changed anything, so that services restart only when their
 * code, env file or unit changed.
 */

type Ctx = StepContext<unknown>;

const UNIT_DIR = '/etc/systemd/system';
const QUIET_DEADLINE_MS = 30_000;

/**
 * Runs a command without streaming its output to the task's log: for what reads files that hold secrets
 * (their checksums included, which would let a reader test guesses of a short secret).
 */
async function quietly(ctx: Ctx, command: ShellCommand) {
	return ctx.ssh.exec(command, { deadlineMs: QUIET_DEADLINE_MS, signal: ctx.signal });
}

function sha256(text: string): string {
	return createHash('sha256').update(text).digest('hex');
}

/**
 * Puts `content` at `path` with the given mode and owner, unless it is there already exactly so. The content
 * travels over SFTP (never on a command line, which the task's log shows), to a temporary name beside the
 * file, and is renamed over it: a reader sees the old file or the new one, never half of one.
 */
export async function installFile(
	ctx: Ctx,
	content: string,
	path: string,
	want: { mode: string; owner: string; group: string }
): Promise<boolean> {
	const found = await quietly(ctx, sh`stat -c '%a %U %G' -- ${path} && sha256sum -- ${path}`);
	const [meta = '', sum = ''] = found.stdout.split('\n');
	if (
		found.exitCode === 0 &&
		meta.trim() === `${want.mode} ${want.owner} ${want.group}` &&
		sum.split(/\s/)[0] === sha256(content)
	) {
		return false;
	}
	const slash = path.lastIndexOf('/');
	const incoming = `${path.slice(0, slash)}/.${path.slice(slash + 1)}.flotilla-new`;
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-provision-'));
	try {
		const local = join(dir, 'file');
		await writeFile(local, content, { mode: 0o600 });
		await uploadFile(ctx.ssh, local, incoming, { mode: 0o600, resume: false });
	} finally {
		await rm(dir, { recursive: true, force: true });
	}
	const moved = await quietly(
		ctx,
		sh`chown -- ${`${want.owner}:${want.group}`} ${incoming} && chmod -- ${want.mode} ${incoming} && mv -f -T -- ${incoming} ${path}`
	);
	if (moved.exitCode !== 0) {
		await quietly(ctx, sh`rm -f -- ${incoming}`);
		throw new StepFailed(
			`could not install ${path}: ${moved.stderr.trim().split('\n').at(-1) ?? `exit ${moved.exitCode}`}`
		);
	}
	return true;
}

// Probes whose answer the phase logs in its own words: their output (an `id: no such user`) would only alarm.
async function exists(ctx: Ctx, path: string): Promise<boolean> {
	return (await quietly(ctx, sh`test -e ${path}`)).exitCode === 0;
}

async function userExists(ctx: Ctx, user: string): Promise<boolean> {
	return (await quietly(ctx, sh`id -u -- ${user}`)).exitCode === 0;
}

async function unitActive(ctx: Ctx, unit: string): Promise<boolean> {
	return (await quietly(ctx, sh`systemctl is-active --quiet -- ${unit}`)).exitCode === 0;
}

/**
 * Paths a clean may remove: a role's own folder somewhere below the root, never a top-level folder such as
 * /opt or /etc itself, whatever a role definition says.
 */
function removable(path: string): boolean {
	return path.split('/').filter(Boolean).length >= 2;
}

/**
 * CLEAN: removes what another role left on the node — its units (stopped, disabled, files gone), its env folder,
 * its code and its service account. What is gone already is left alone, so a clean node stays as it is.
 */
export async function cleanRole(
	ctx: Ctx,
	role: CodeRole,
	def: RoleProvisioning | null,
	keep: { user: string; paths: string[]; units: string[] }
): Promise<boolean> {
	let changed = false;
	let unitsRemoved = false;
	for (const unit of def?.unitTemplates ?? []) {
		// A unit the new role installs too is the new role's: its own phases bring it up to date.
		if (keep.units.includes(unit.name)) continue;
		const file = `${UNIT_DIR}/${unit.name}`;
		if (!(await exists(ctx, file))) continue;
		await anyExit(ctx)(sh`systemctl stop -- ${unit.name}`);
		await anyExit(ctx)(sh`systemctl disable -- ${unit.name}`);
		await ctx.exec(sh`rm -f -- ${file}`);
		ctx.log(`${role.name}: unit ${unit.name} stopped, disabled and removed`);
		unitsRemoved = true;
	}
	if (unitsRemoved) await ctx.exec(sh`systemctl daemon-reload`);
	const { dir } = envFileOf(role.name);
	for (const path of [dir, role.path]) {
		if (!removable(path) || keep.paths.includes(path) || !(await exists(ctx, path))) continue;
		await ctx.exec(sh`rm -rf -- ${path}`);
		ctx.log(`${role.name}: removed ${path}`);
		changed = true;
	}
	if (def) {
		const user = serviceUserOf(def);
		if (user !== keep.user && user !== 'root' && (await userExists(ctx, user))) {
			await ctx.exec(sh`userdel -- ${user}`);
			ctx.log(`${role.name}: removed the service account ${user}`);
			changed = true;
		}
	}
	return changed || unitsRemoved;
}

/**
 * DEPLOY on a fresh node: a git role's first checkout is cloned from the definition's repository, after which
 * Code Sync's own method fetches and switches it. Returns the commit the role runs, and what it ran before.
 */
export async function deployRole(
	ctx: Ctx,
	role: CodeRole,
	def: RoleProvisioning | null,
	target: string
): Promise<{ head: string; previous: string | null; changed: boolean }> {
	const method = methodFor(role);
	if (role.method === 'git' && !(await exists(ctx, `${role.path}/.git`))) {
		if (!def?.repoUrl) {
			throw new StepFailed(`${role.name}: ${role.path} is no git checkout and the role names no repository to clone`);
		}
		await ctx.exec(sh`mkdir -p -- ${role.path.slice(0, role.path.lastIndexOf('/')) || '/'}`);
		await ctx.exec(sh`git clone --quiet -- ${def.repoUrl} ${role.path}`);
		ctx.log(`${role.name}: cloned ${def.repoUrl} into ${role.path}`);
	}
	const previous = await method.current(anyExit(ctx), role);
	if (previous && (previous.startsWith(target) || target.startsWith(previous))) {
		ctx.log(`${role.name}: already on ${previous.slice(0, 12)}`);
		return { head: previous, previous, changed: false };
	}
	const fetched = await method.fetch(ctx, role, target);
	const head = await method.switchTo(ctx, role, fetched);
	ctx.log(`${role.name}: switched to ${head.slice(0, 12)}`);
	if (role.installCommand.length) {
		const work = role.method === 'push' ? `${role.path}/current` : role.path;
		await ctx.exec(sh`cd -- ${work} && ${role.installCommand}`);
	}
	return { head, previous, changed: true };
}

/** SYSTEM DEPS: the role's Debian packages, through apt (which waits for a held dpkg lock instead of failing). */
export async function installPackages(ctx: Ctx, def: RoleProvisioning | null): Promise<boolean> {
	const packages = def?.packages ?? [];
	if (!packages.length) {
		ctx.log('the role needs no system packages');
		return false;
	}
	await ctx.exec(
		sh`env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y --no-install-recommends -- ${packages}`,
		{ deadlineMs: 900_000 }
	);
	ctx.log(`installed ${packages.join(', ')}`);
	return true;
}

/**
 * SECRETS: the service account (created when missing) and the env file rendered from the role's template with
 * its secrets, mode 640, owned root:<account>, in a folder only root and the account can enter. The log says
 * whether the file changed, never what it holds.
 */
export async function writeSecrets(ctx: Ctx, role: CodeRole, def: RoleProvisioning): Promise<boolean> {
	const user = serviceUserOf(def);
	let changed = false;
	if (!(await userExists(ctx, user))) {
		await ctx.exec(sh`useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin -- ${user}`);
		ctx.log(`${role.name}: created the service account ${user}`);
		changed = true;
	}
	const { dir, file } = envFileOf(role.name);
	const folder = await quietly(ctx, sh`stat -c '%a %U %G' -- ${dir}`);
	if (folder.stdout.trim() !== `750 root ${user}`) {
		await ctx.exec(sh`install -d -m 750 -o root -g ${user} -- ${dir}`);
	}
	let content: string;
	try {
		content = renderTemplate(def.envTemplate, role, def, openSecrets(def));
	} catch (err) {
		throw new StepFailed((err as Error).message);
	}
	const wrote = await installFile(ctx, content, file, { mode: '640', owner: 'root', group: user });
	ctx.log(`${role.name}: ${file} ${wrote ? 'written' : 'unchanged'} (mode 640, root:${user})`);
	return changed || wrote;
}

/**
 * SERVICES: the role's unit files installed (daemon-reload when one changed), enabled, and started in the
 * role's start order; restarted instead when anything they run on changed (`restart`). Code Sync's update
 * passes `start: false`: its own restart step restarts the role's units.
 */
export async function installServices(
	ctx: Ctx,
	role: CodeRole,
	def: RoleProvisioning,
	opts: { restart: boolean; start: boolean }
): Promise<boolean> {
	const restart = opts.restart;
	let unitsChanged = false;
	for (const unit of def.unitTemplates) {
		const content = renderTemplate(unit.template, role, def);
		const wrote = await installFile(ctx, content, `${UNIT_DIR}/${unit.name}`, {
			mode: '644',
			owner: 'root',
			group: 'root'
		});
		if (wrote) ctx.log(`${role.name}: unit ${unit.name} installed`);
		unitsChanged ||= wrote;
	}
	if (unitsChanged) await ctx.exec(sh`systemctl daemon-reload`);
	let changed = unitsChanged;
	for (const unit of def.unitTemplates) {
		if ((await quietly(ctx, sh`systemctl is-enabled --quiet -- ${unit.name}`)).exitCode !== 0) {
			await ctx.exec(sh`systemctl enable -- ${unit.name}`);
			changed = true;
		}
	}
	if (!opts.start) return changed;
	for (const unit of def.unitTemplates) {
		const active = await unitActive(ctx, unit.name);
		if (active && !(restart || unitsChanged)) continue;
		await ctx.exec(sh`systemctl ${active ? 'restart' : 'start'} -- ${unit.name}`);
		ctx.log(`${role.name}: ${unit.name} ${active ? 'restarted' : 'started'}`);
		changed = true;
	}
	return changed;
}
