import { randomBytes, randomInt } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema, updateRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { buildPlan, triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole, updateRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { git } from '../testbed/repos';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Signed commits, pre-flight and quiesce (docs/code-sync.md) on real sshd hosts (127.0.1.110–111) with a git
 * role cloned from a real origin: signatures are made by real git with real SSH keys, and what the tests
 * check is read from the hosts' filesystems (and the real /proc), not from what the console believes.
 */

const ROLE = 'app';
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let work = '';
const keys = { allowed: '', other: '', allowedLine: '' };

const run = promisify(execFile);

/** A commit on the origin's main, signed with `key` (a private key file) or unsigned; returns its sha. */
async function commit(files: Record<string, string>, key: string | null, message = 'change'): Promise<string> {
	for (const [file, content] of Object.entries(files)) {
		await mkdir(dirname(join(work, file)), { recursive: true });
		await writeFile(join(work, file), content, { mode: /\.sh$/.test(file) ? 0o755 : 0o644 });
	}
	await git(['-C', work, 'add', '--all']);
	const sign = key ? ['-c', 'gpg.format=ssh', '-c', `user.signingkey=${key}`] : [];
	await git(['-C', work, ...sign, 'commit', '--quiet', '--allow-empty', ...(key ? ['-S'] : []), '-m', message]);
	await git(['-C', work, 'push', '--quiet', 'origin', 'HEAD:main']);
	return git(['-C', work, 'rev-parse', 'HEAD']);
}

const healthcheck = (tag: string) => ({
	'healthcheck.sh': `#!/bin/sh\n# Healthy unless the test put a marker on this host.\ntest ! -e /etc/flotilla/break-${tag}\n`
});

/** A host's own record of what its role's programs did, one word a line. */
const lifecycle = (h: TestHost) =>
	readFile(join(h.root, 'var/lib/flotilla-testbed/lifecycle.log'), 'utf8').then(
		(s) => s.split('\n').filter(Boolean),
		() => [] as string[]
	);
const LOG = '/var/lib/flotilla-testbed/lifecycle.log';
const DATA = '/var/lib/flotilla-testbed/app-data';

async function logOf(taskId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
}

async function deploy(sha: string, tag?: string, role = ROLE) {
	await notifyCommit(systemActor, { commit: sha, changed_roles: [role], ...(tag ? { tag } : {}) });
	const { runId } = await triggerUpdate(systemActor, { scope: { roles: [role] }, dry_run: false, concurrency: 5 });
	return waitForRun(runId!, ['succeeded', 'failed', 'paused'], 120_000);
}

const steps = (t: { steps: { phase: string; name: string; state: string }[] }) =>
	t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`);

const change = (fields: Record<string, unknown>) => updateRole(systemActor, ROLE, updateRoleSchema.parse(fields));

beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 110, roles: [ROLE] });
	work = bed.origins[ROLE]!.replace(/\.git$/, '.work');
	for (const name of ['allowed', 'other'] as const) {
		const file = join(bed.dir, `signing-${name}`);
		await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
		keys[name] = file;
	}
	const [type, blob] = (await readFile(`${keys.allowed}.pub`, 'utf8')).split(' ');
	keys.allowedLine = `deploy@flotilla.test ${type} ${blob}`;
	pg = await freshPostgres('flotilla_preflight');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	await registerTestbedNodes(bed, () => ({ roles: [ROLE] }));
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: ROLE,
			path: `/opt/${ROLE}`,
			units: [`${ROLE}.service`],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
			health_timeout_seconds: 2
		})
	);
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('signed commits', () => {
	let good = '';

	it('a commit signed by an allowed SSH key deploys; the plan says the role requires signatures', async () => {
		await change({ signatures: { allowed_signers: [keys.allowedLine] } });
		good = await commit(healthcheck('one'), keys.allowed, 'signed by the allowed key');
		await notifyCommit(systemActor, { commit: good, changed_roles: [ROLE] });
		expect((await buildPlan()).signatures_required).toEqual([ROLE]);
		const r = await deploy(good);
		expect(r.state).toBe('succeeded');
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
		const log = await logOf(r.tasks[0]!.id);
		expect(log).toContain(`preflight: ${ROLE}: commit ${good.slice(0, 12)} is signed by an allowed signer`);
		// The file git read is the console's, written on the node inside .git (the checkout stays clean).
		const written = await readFile(join(bed.hosts[0]!.root, `opt/${ROLE}/.git/flotilla-allowed-signers`), 'utf8');
		expect(written).toBe(`${keys.allowedLine}\n`);
	}, 180_000);

	it('an unsigned commit and one signed by another key fail before the switch; the nodes stay as they were', async () => {
		for (const [key, reason] of [
			[null, /no signature found/],
			[keys.other, /No principal matched/]
		] as const) {
			const bad = await commit({ 'note.txt': `${key ?? 'unsigned'}\n` }, key);
			const r = await deploy(bad);
			expect(r.state).toBe('failed');
			for (const t of r.tasks) {
				// Failed, not rolled back: none of the steps that ran has anything to undo, and no undo ran.
				expect(t.state).toBe('failed');
				expect(t.error).toMatch(
					new RegExp(`^preflight: ${ROLE}: commit ${bad.slice(0, 12)} is not signed by an allowed signer \\(`)
				);
				expect(t.error).toMatch(reason);
				expect(steps(t)).toEqual(['do:prepare:succeeded', 'do:fetch:succeeded', 'do:preflight:failed']);
			}
			for (const h of bed.hosts) {
				expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
				expect(await readFile(join(h.root, `opt/${ROLE}/build/REVISION`), 'utf8')).toBe(`${good}\n`);
			}
		}
	}, 240_000);

	it('the next commit signed by the allowed key deploys again', async () => {
		good = await commit({ 'note.txt': 'signed again\n' }, keys.allowed);
		expect((await deploy(good)).state).toBe('succeeded');
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(good);
	}, 180_000);

	it('a role following tags deploys an unsigned commit named by a signed tag, and refuses an unsigned tag', async () => {
		await change({ follow_tags: 'v*' });
		const tagged = await commit({ 'note.txt': 'tagged\n' }, null);
		await git([
			'-C',
			work,
			'-c',
			'gpg.format=ssh',
			'-c',
			`user.signingkey=${keys.allowed}`,
			'tag',
			'-s',
			'v1.10.0',
			'-m',
			'v1.10.0'
		]);
		await git(['-C', work, 'push', '--quiet', 'origin', 'v1.10.0']);
		let r = await deploy(tagged, 'v1.10.0');
		expect(r.state).toBe('succeeded');
		expect(await logOf(r.tasks[0]!.id)).toContain(
			`preflight: ${ROLE}: tag v1.10.0 (${tagged.slice(0, 12)}) is signed by an allowed signer`
		);
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(tagged);

		const unsigned = await commit({ 'note.txt': 'tagged, unsigned\n' }, keys.allowed);
		await git(['-C', work, 'tag', '-a', 'v1.11.0', '-m', 'v1.11.0']);
		await git(['-C', work, 'push', '--quiet', 'origin', 'v1.11.0']);
		r = await deploy(unsigned, 'v1.11.0');
		expect(r.state).toBe('failed');
		// The commit itself is signed: a role that follows tags trusts the tag, and this one is not signed.
		for (const t of r.tasks) {
			expect(t.error).toBe(
				`preflight: ${ROLE}: tag v1.11.0 is not signed by an allowed signer (error: no signature found); nothing was changed`
			);
		}
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, ROLE)).toBe(tagged);
		const fixed = await commit({ 'note.txt': 'tagged and signed\n' }, null);
		await git([
			'-C',
			work,
			'-c',
			'gpg.format=ssh',
			'-c',
			`user.signingkey=${keys.allowed}`,
			'tag',
			'-s',
			'v1.12.0',
			'-m',
			'v1.12.0'
		]);
		await git(['-C', work, 'push', '--quiet', 'origin', 'v1.12.0']);
		expect((await deploy(fixed, 'v1.12.0')).state).toBe('succeeded');
		await change({ signatures: null, follow_tags: null });
	}, 240_000);

	it("a push role is verified in the console's checkout before anything is uploaded", async () => {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'shipped',
				method: 'push',
				path: '/opt/shipped',
				source_repo: work,
				units: ['shipped.service'],
				signatures: { allowed_signers: [keys.allowedLine] }
			})
		);
		await db()
			.update(nodes)
			.set({ roles: [ROLE, 'shipped'] });
		const unsigned = await commit({ 'note.txt': 'push, unsigned\n' }, null);
		let r = await deploy(unsigned, undefined, 'shipped');
		expect(r.state).toBe('failed');
		for (const t of r.tasks) {
			expect(t.error).toBe(
				`fetch: shipped: commit ${unsigned.slice(0, 12)} is not signed by an allowed signer (no signature found); nothing was changed`
			);
		}
		for (const h of bed.hosts) {
			const releases = await readdir(join(h.root, 'opt/shipped/releases')).catch(() => []);
			expect(releases).toEqual([]);
		}
		const signed = await commit({ 'note.txt': 'push, signed\n' }, keys.allowed);
		r = await deploy(signed, undefined, 'shipped');
		expect(r.state).toBe('succeeded');
		for (const h of bed.hosts) {
			expect(await readlink(join(h.root, 'opt/shipped/current'))).toBe(`releases/${signed}`);
		}
		await db()
			.update(nodes)
			.set({ roles: [ROLE] });
	}, 240_000);
});

describe('pre-flight', () => {
	it('a failing readiness check skips the node with its output as the reason; the others update', async () => {
		const [blocked, ready] = bed.hosts as [TestHost, TestHost];
		await change({
			readiness_check: {
				argv: ['sh', '-c', 'if [ -e /etc/flotilla/not-ready ]; then cat /etc/flotilla/not-ready; exit 4; fi'],
				deadline_seconds: 10
			}
		});
		await writeFile(join(blocked.root, 'etc/flotilla/not-ready'), 'last save 42 minutes ago\n');
		const before = await bed.checkedOutCommit(blocked, ROLE);
		const next = await commit({ 'note.txt': 'readiness\n' }, null);
		const r = await deploy(next);
		const skipped = r.tasks.find((t) => t.nodeName === blocked.name)!;
		expect(skipped.state).toBe('skipped');
		expect(skipped.error).toBe(
			`${ROLE}: not ready: sh -c ${'if [ -e /etc/flotilla/not-ready ]; then cat /etc/flotilla/not-ready; exit 4; fi'} exited with 4: last save 42 minutes ago; not touching it`
		);
		expect(await bed.checkedOutCommit(blocked, ROLE)).toBe(before);
		expect(r.tasks.find((t) => t.nodeName === ready.name)!.state).toBe('succeeded');
		expect(await bed.checkedOutCommit(ready, ROLE)).toBe(next);
		await change({ readiness_check: null });
		expect((await deploy(next)).state).toBe('succeeded');
	}, 240_000);

	it('a snapshot is taken before each switch, kept N deep, and restored by the rollback', async () => {
		await change({
			snapshot: {
				data_paths: [DATA],
				keep: 2,
				restore_command: ['sh', '-c', 'tar -xzf "$FLOTILLA_SNAPSHOT" -C /']
			}
		});
		for (const h of bed.hosts) {
			await mkdir(join(h.root, DATA.slice(1)), { recursive: true });
			await writeFile(join(h.root, DATA.slice(1), 'state'), 'saved by v1\n');
		}
		const backups = (h: TestHost) =>
			readdir(join(h.root, `opt/backups/${ROLE}`)).then((l) => l.filter((n) => n.endsWith('.tar.gz')).sort());
		const seen: string[][] = [];
		for (let i = 0; i < 3; i++) {
			const sha = await commit({ 'note.txt': `snapshot ${i}\n` }, null);
			expect((await deploy(sha)).state).toBe('succeeded');
			seen.push(await backups(bed.hosts[0]!));
		}
		expect(seen.map((s) => s.length)).toEqual([1, 2, 2]);
		// The oldest went: the newest two are the last two taken.
		expect(seen[2]![0]).toBe(seen[1]![1]);
		const listed = await run('tar', ['-tzf', join(bed.hosts[0]!.root, `opt/backups/${ROLE}`, seen[2]![1]!)]);
		expect(listed.stdout).toContain('var/lib/flotilla-testbed/app-data/state');
		expect(listed.stdout).toContain(`opt/${ROLE}/healthcheck.sh`);

		// A commit whose install changes the data and whose health fails on one host: that host rolls back.
		const bad = bed.hosts[1]!;
		const previous = await bed.checkedOutCommit(bad, ROLE);
		await writeFile(join(bad.root, 'etc/flotilla/break-two'), '1');
		const next = await commit(
			{
				...healthcheck('two'),
				'install.sh': `#!/bin/sh\nset -eu\ncd "$(dirname "$0")"\nmkdir -p build\ngit rev-parse HEAD >build/REVISION\necho 'migrated by v2' >${DATA}/state\n`
			},
			null
		);
		const r = await deploy(next);
		const t = r.tasks.find((x) => x.nodeName === bad.name)!;
		expect(t.state).toBe('rolled_back');
		expect(await bed.checkedOutCommit(bad, ROLE)).toBe(previous);
		expect(await readFile(join(bad.root, DATA.slice(1), 'state'), 'utf8')).toBe('saved by v1\n');
		// The good host keeps what the new install wrote.
		expect(await readFile(join(bed.hosts[0]!.root, DATA.slice(1), 'state'), 'utf8')).toBe('migrated by v2\n');
		const log = await logOf(t.id);
		const from = log.findIndex((l) => l.startsWith(`switch: ${ROLE}: back on`));
		expect(from).toBeGreaterThan(-1);
		const rollback = log.slice(from).filter((l) => /back on|restored snapshot|restarted/.test(l));
		expect(rollback).toEqual([
			`switch: ${ROLE}: back on ${previous.slice(0, 12)}`,
			expect.stringMatching(
				new RegExp(`^switch: ${ROLE}: restored snapshot /opt/backups/${ROLE}/.*\\.tar\\.gz \\(sh -c`)
			),
			`switch: ${ROLE}: restarted (systemctl restart ${ROLE}.service)`
		]);
		await run('rm', ['-f', join(bad.root, 'etc/flotilla/break-two')]);
		expect((await deploy(next)).state).toBe('succeeded');
		await change({ snapshot: null });
	}, 360_000);
});

describe('quiesce', () => {
	it('quiesce and resume run in order around the restart, as the host logs them', async () => {
		await change({
			quiesce: {
				quiesce: { argv: ['sh', '-c', `echo quiesce >>${LOG}`], deadline_seconds: 10 },
				resume: { argv: ['sh', '-c', `echo resume >>${LOG}`], deadline_seconds: 10 }
			},
			restart_command: ['sh', '-c', `echo restart >>${LOG}`]
		});
		const sha = await commit({ 'note.txt': 'quiesce\n' }, null);
		expect((await deploy(sha)).state).toBe('succeeded');
		for (const h of bed.hosts) expect(await lifecycle(h)).toEqual(['quiesce', 'restart', 'resume']);
	}, 180_000);

	it('a quiesce that hangs fails the restart at its deadline, the update rolls back, and the process is dead', async () => {
		const host = bed.hosts[0]!;
		// A number no other process on the machine has in its argv, so that /proc finds this one only.
		const marker = `${randomInt(100_000, 999_999)}.5`;
		await change({
			quiesce: {
				quiesce: {
					argv: [
						'sh',
						'-c',
						`if [ -e /etc/flotilla/hang ]; then echo hang >>${LOG}; exec sleep "$1"; fi; echo quiesce >>${LOG}`,
						'q',
						marker
					],
					deadline_seconds: 2
				},
				resume: { argv: ['sh', '-c', `echo resume >>${LOG}`], deadline_seconds: 10 }
			}
		});
		await writeFile(join(host.root, 'etc/flotilla/hang'), '1');
		const before = await bed.checkedOutCommit(host, ROLE);
		const logged = (await lifecycle(host)).length;
		const sha = await commit({ 'note.txt': 'hung quiesce\n' }, null);
		const r = await deploy(sha);
		const t = r.tasks.find((x) => x.nodeName === host.name)!;
		expect(t.state).toBe('rolled_back');
		expect(t.error).toBe(`restart: ${ROLE}: quiesce timed out after 2 s`);
		expect(steps(t).filter((s) => !s.startsWith('do:') || s.endsWith(':failed'))).toEqual([
			'do:restart:failed',
			'undo:switch:succeeded',
			'verify:verify:succeeded'
		]);
		expect(await bed.checkedOutCommit(host, ROLE)).toBe(before);
		// The host's own order: the quiesce that hung, the rollback's restart, then the resume.
		expect((await lifecycle(host)).slice(logged)).toEqual(['hang', 'restart', 'resume']);
		const alive: string[] = [];
		for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
			const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
			if (cmd.includes(marker)) alive.push(`${pid}: ${cmd.replaceAll('\0', ' ')}`);
		}
		expect(alive).toEqual([]);
		const other = r.tasks.find((x) => x.nodeName !== host.name)!;
		expect(other.state).toBe('succeeded');
		await run('rm', ['-f', join(host.root, 'etc/flotilla/hang')]);
	}, 180_000);
});
