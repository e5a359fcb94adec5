import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { systemActor } from '../../src/lib/server/audit';
import { createRole, getRole, updateRole } from '../../src/lib/server/codesync/roles';
import { ServiceError } from '../../src/lib/server/errors';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase } from '../../src/lib/server/db';
import type { Rollout } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { createRun, getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease } from '../../src/lib/server/releases/releases';
import { hmacSignature } from '../../src/lib/server/releases/signing';
import { cancelRollout, driveRollouts } from '../../src/lib/server/rollouts/driver';
import { createRollout, getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * The `commands` deploy method on real sshd hosts (127.0.1.200–202): a release rolled out to a role whose update
 * is its own programs. Each host's deploy script writes every call to the host's filesystem, which the test
 * reads directly, not over SSH; faults are files the script looks for.
 */

const SECRET = 'commands-test-signing-secret-0123';
/** A number no other test sleeps for, so the hung smoke's process is recognisable in /proc. */
const HANG = 7391;
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let nodeIds: string[] = [];

const DEPLOY = `#!/bin/sh
echo "$1 $FLOTILLA_ROLE $FLOTILLA_COMMIT \${FLOTILLA_PREVIOUS_COMMIT:-none}" >> /opt/deploy.log
test -e "/etc/flotilla/fail-$1" && { echo "$1 failed: relation orders already exists" >&2; exit 3; }
test -e "/etc/flotilla/hang-$1" && sleep ${HANG}
exit 0
`;

const calls = async (h: TestHost) =>
	(await readFile(join(h.root, 'opt/deploy.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
const commitFile = (h: TestHost) => readFile(join(h.root, 'opt/shop/.flotilla-commit'), 'utf8').catch(() => null);
const fault = (h: TestHost, name: string) => join(h.root, 'etc/flotilla', name);

let version = 0;
async function rollOut(host: TestHost, sha: string): Promise<Rollout> {
	const m: Record<string, unknown> = {
		version: `1.${version++}.0`,
		sha,
		channel: 'stable',
		migrations_required: true,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	m.signature = hmacSignature(m, SECRET);
	const release = await createRelease(systemActor, m);
	const { rollout } = await createRollout(
		systemActor,
		createRolloutSchema.parse({
			release_id: release.id,
			strategy: 'immediate',
			target: { nodes: [host.name], roles: ['shop'] }
		})
	);
	return waitFor(
		'the rollout to end its stage',
		async () => {
			await driveRollouts();
			const r = await getRollout(rollout!.id);
			return ['completed', 'paused', 'failed'].includes(r.state) ? r : null;
		},
		60_000
	).catch(async (err: unknown) => {
		const r = await getRollout(rollout!.id);
		const run = r.stages[0]?.runId ? await getRun(r.stages[0].runId) : null;
		console.log(JSON.stringify({ r, run }, null, 1).slice(0, 6000));
		throw err;
	});
}

async function onlyTask(r: Rollout) {
	const run = await getRun(r.stages[0]!.runId!);
	return run.tasks[0]!;
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 200, roles: ['shop'] });
	pg = await freshPostgres('flotilla_release_commands');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	useReleaseKeys({ ed25519: [], hmacSecret: SECRET });
	registerDomains();
	for (const h of bed.hosts) await writeFile(join(h.root, 'opt/deploy.sh'), DEPLOY);
	nodeIds = (await registerTestbedNodes(bed, () => ({ roles: ['shop'] }))).map((n) => n.id);
	const step = (name: string, deadline = 30) => ({ argv: ['sh', '/opt/deploy.sh', name], deadline_seconds: deadline });
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: 'shop',
			method: 'commands',
			path: '/opt/shop',
			commands: {
				backup: step('backup'),
				pull: step('pull'),
				migrate: step('migrate'),
				smoke: step('smoke', 2),
				switch: step('switch'),
				rollback: step('rollback')
			},
			health: {
				type: 'command',
				command: ['sh', '-c', 'test ! -e "/etc/flotilla/unhealthy-$(cat /opt/shop/.flotilla-commit)"']
			},
			health_timeout_seconds: 2
		})
	);
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('the commands deploy method on real hosts', () => {
	it('runs backup, pull, migrate, smoke, switch in order, each a step of its own, then confirms health', async () => {
		const h = bed.hosts[0]!;
		const sha = 'a'.repeat(40);
		const r = await rollOut(h, sha);
		expect(r.state).toBe('completed');
		const t = await onlyTask(r);
		expect(t.state).toBe('succeeded');
		expect(t.steps.map((s) => `${s.name}:${s.state}`)).toEqual(
			[
				'window',
				'prepare',
				'backup',
				'fetch',
				'preflight',
				'migrate',
				'smoke',
				'switch',
				'install',
				'restart',
				'verify',
				'bake',
				'record'
			].map((n) => `${n}:succeeded`)
		);
		expect(await calls(h)).toEqual(
			['backup', 'pull', 'migrate', 'smoke', 'switch'].map((c) => `${c} shop ${sha} none`)
		);
		expect(await commitFile(h)).toBe(`${sha}\n`);
		expect((await nodesOfRollout(r.id)).map((n) => n.state)).toEqual(['succeeded']);

		// The next release sees the commit the node runs as the previous one.
		const next = 'b'.repeat(40);
		expect((await rollOut(h, next)).state).toBe('completed');
		expect((await calls(h)).at(-1)).toBe(`switch shop ${next} ${sha}`);
		expect(await commitFile(h)).toBe(`${next}\n`);
	}, 90_000);

	it('a failing migrate runs the rollback command and ends rolled_back, the commit file untouched', async () => {
		const h = bed.hosts[1]!;
		const first = 'c'.repeat(40);
		expect((await rollOut(h, first)).state).toBe('completed');
		await writeFile(fault(h, 'fail-migrate'), '');
		const bad = 'd'.repeat(40);
		const r = await rollOut(h, bad);
		expect(r.state).toBe('paused');
		const t = await onlyTask(r);
		expect(t.state).toBe('rolled_back');
		expect(t.error).toBe('migrate: shop: migrate exited with 3: migrate failed: relation orders already exists');
		expect(t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'do:window:succeeded',
			'do:prepare:succeeded',
			'do:backup:succeeded',
			'do:fetch:succeeded',
			'do:preflight:succeeded',
			'do:migrate:failed',
			'undo:migrate:succeeded',
			'undo:backup:succeeded',
			'verify:verify:succeeded'
		]);
		// The rollback ran once (the backup's undo found it done), after the failed migrate; no switch happened.
		expect((await calls(h)).slice(-4)).toEqual(
			['backup', 'pull', 'migrate', 'rollback'].map((c) => `${c} shop ${bad} ${first}`)
		);
		expect(await commitFile(h)).toBe(`${first}\n`);
		expect((await nodesOfRollout(r.id)).map((n) => `${n.state}: ${n.error}`)).toEqual([`rolled_back: ${t.error}`]);
		await rm(fault(h, 'fail-migrate'));
		await cancelRollout(systemActor, r.id);
	}, 90_000);

	it('an unhealthy node after the switch runs the rollback and is put back on its commit', async () => {
		const h = bed.hosts[1]!;
		const before = (await commitFile(h))!.trim();
		const bad = 'e'.repeat(40);
		// Unhealthy on the bad commit only: back on the one before, the rollback's health verification passes.
		await writeFile(fault(h, `unhealthy-${bad}`), '');
		const r = await rollOut(h, bad);
		const t = await onlyTask(r);
		expect(t.state).toBe('rolled_back');
		expect(t.error).toMatch(/^verify: /);
		expect((await calls(h)).slice(-6)).toEqual(
			['backup', 'pull', 'migrate', 'smoke', 'switch', 'rollback'].map((c) => `${c} shop ${bad} ${before}`)
		);
		expect(await commitFile(h)).toBe(`${before}\n`);
		await cancelRollout(systemActor, r.id);
	}, 90_000);

	it('a hung smoke is killed at its deadline on the host, then rolled back', async () => {
		const h = bed.hosts[2]!;
		await writeFile(fault(h, 'hang-smoke'), '');
		const sha = 'f'.repeat(40);
		const r = await rollOut(h, sha);
		const t = await onlyTask(r);
		expect(t.state).toBe('rolled_back');
		expect(t.error).toBe('smoke: shop: smoke timed out after 2 s');
		expect((await calls(h)).slice(-2)).toEqual([`smoke shop ${sha} none`, `rollback shop ${sha} none`]);
		expect(await commitFile(h)).toBeNull();
		// No `sleep` of the hung smoke survives on the host (its processes are visible in the real /proc).
		const left: string[] = [];
		for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
			const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
			if (cmd.replaceAll('\0', ' ').trim() === `sleep ${HANG}`) left.push(pid);
		}
		expect(left).toEqual([]);
		const log: string[] = [];
		for await (const l of readRunLog(r.stages[0]!.runId!)) log.push(`${l.step}: ${l.text}`);
		expect(log).toContain('smoke: shop: smoke: sh /opt/deploy.sh smoke (deadline 2 s)');
		await rm(fault(h, 'hang-smoke'));
		await cancelRollout(systemActor, r.id);
	}, 90_000);

	it("Code Sync's own update leaves a commands role out and says why", async () => {
		const h = bed.hosts[0]!;
		const before = await calls(h);
		const run = await createRun(systemActor, {
			kind: 'code-sync',
			title: 'Update shop',
			nodeIds: [nodeIds[0]!],
			params: { targets: { shop: '1'.repeat(40) } }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 30_000);
		expect(done.tasks.map((t) => `${t.state}: ${t.error}`)).toEqual([
			'skipped: its roles deploy by commands: a rollout of a release updates them'
		]);
		expect(await calls(h)).toEqual(before);
	});

	it('without a rollback command a failure leaves the task failed and needing attention, saying why', async () => {
		const h = bed.hosts[0]!;
		const { rollback: _rollback, ...withoutRollback } = (await getRole('shop')).commands!;
		await updateRole(systemActor, 'shop', { commands: withoutRollback });
		await writeFile(fault(h, 'fail-smoke'), '');
		const before = (await commitFile(h))!;
		const sha = '2'.repeat(40);
		const r = await rollOut(h, sha);
		const t = await onlyTask(r);
		expect(t.state).toBe('failed');
		expect(t.needsAttention).toBe(true);
		expect(t.steps.filter((s) => s.state === 'failed').map((s) => `${s.phase}:${s.name}: ${s.error}`)).toEqual([
			'do:smoke: shop: smoke exited with 3: smoke failed: relation orders already exists',
			'undo:smoke: shop: no rollback command, so what its update did so far stays on the node'
		]);
		expect((await calls(h)).at(-1)).toBe(`smoke shop ${sha} ${before.trim()}`);
		expect(await commitFile(h)).toBe(before);
		await rm(fault(h, 'fail-smoke'));
		await cancelRollout(systemActor, r.id);
	}, 90_000);

	it('a role change that would part the method from its commands is refused, naming commands', async () => {
		const fields = async (changes: Parameters<typeof updateRole>[2]) => {
			const err = await updateRole(systemActor, 'shop', changes).catch((e: unknown) => e);
			expect(err).toBeInstanceOf(ServiceError);
			return (err as ServiceError).fields;
		};
		expect(await fields({ method: 'git' })).toEqual({
			commands: 'only a commands role has commands: set them to null'
		});
		expect(await fields({ commands: null })).toEqual({
			commands: 'is required for the commands method (backup, pull, migrate, smoke, switch)'
		});
		expect((await getRole('shop')).method).toBe('commands');
		expect((await updateRole(systemActor, 'shop', { method: 'git', commands: null })).commands).toBeNull();
	});
});
