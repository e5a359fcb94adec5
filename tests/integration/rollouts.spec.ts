import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog, events, rolloutNodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { ServiceError } from '../../src/lib/server/errors';
import { useMinimumVersion, useReleaseKeys } from '../../src/lib/server/releases/keys';
import { nodesOnRelease } from '../../src/lib/server/releases/nodes';
import { createRelease, getRelease } from '../../src/lib/server/releases/releases';
import { hmacSignature } from '../../src/lib/server/releases/signing';
import {
	advanceRollout,
	cancelRollout,
	driveRollouts,
	pauseRollout,
	resumeRollout,
	rollbackRollout
} from '../../src/lib/server/rollouts/driver';
import {
	activeRolloutsOfNode,
	createRollout,
	getRollout,
	nodesOfRollout
} from '../../src/lib/server/rollouts/rollouts';
import type { Rollout } from '../../src/lib/server/db/schema';
import { windowSchema } from '../../src/lib/schemas/system-updates';
import { presentRolloutDetail } from '../../src/lib/server/rollouts/present';
import { deleteWindow, saveWindow } from '../../src/lib/server/sysupdates/windows';
import { freshPostgres } from '../support/databases';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { waitFor } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';
import { POST as postRollout } from '../../src/routes/api/rollouts/+server';
import { POST as postRollback } from '../../src/routes/api/rollouts/[id]/rollback/+server';
import { callRoute, errorOf } from '../support/route-call';

/**
 * Rollouts end to end on 20 real sshd hosts (127.0.1.210–229) with a git role: which commit each host has checked
 * out is read from the host's own filesystem. The driver's turns are taken by the test (the periodic job's work).
 */

const HOSTS = 20;
const SECRET = 'rollout-test-signing-secret-0123';
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const idOf = new Map<string, string>();
const hostOf = new Map<string, TestHost>();

const breakable = (tag: string) => ({
	message: `health check ${tag}`,
	files: { 'healthcheck.sh': `#!/bin/sh\ntest ! -e /etc/flotilla/break-${tag}\n` }
});
const marker = (host: TestHost, tag: string) => join(host.root, 'etc/flotilla', `break-${tag}`);

async function release(version: string, sha: string) {
	const m: Record<string, unknown> = {
		version,
		sha,
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	m.signature = hmacSignature(m, SECRET);
	return createRelease(systemActor, m);
}

async function rollout(input: Record<string, unknown>) {
	const { rollout } = await createRollout(systemActor, createRolloutSchema.parse(input));
	return rollout!;
}

/** Takes driver turns until the rollout is in one of `states`. */
async function driveUntil(id: string, states: Rollout['state'][], timeoutMs = 150_000): Promise<Rollout> {
	return waitFor(
		`rollout in ${states.join('/')}`,
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return states.includes(r.state) ? r : null;
		},
		timeoutMs
	);
}

async function commitsOnHosts(): Promise<Map<string, string>> {
	const out = new Map<string, string>();
	for (const h of bed.hosts) out.set(h.name, await bed.checkedOutCommit(h, 'backend'));
	return out;
}

async function stageNames(id: string, stage: number): Promise<string[]> {
	return (await nodesOfRollout(id)).filter((n) => n.stage === stage).map((n) => n.nodeName);
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: HOSTS, firstHost: 210, roles: ['backend'] });
	pg = await freshPostgres('flotilla_rollouts');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	useReleaseKeys({ ed25519: [], hmacSecret: SECRET });
	registerDomains();
	const rows = await registerTestbedNodes(bed, () => ({ roles: ['backend'] }));
	for (const r of rows) idOf.set(r.name, r.id);
	for (const h of bed.hosts) hostOf.set(h.name, h);
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: 'backend',
			path: '/opt/backend',
			units: ['backend.service'],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
			health_timeout_seconds: 3
		})
	);
	await startEngine({ concurrency: 50, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMinimumVersion(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('rollouts on real hosts', () => {
	const shas: Record<string, string> = {};
	const releaseIds: Record<string, string> = {};

	it('a good release reaches every node through 3 stages (10/50/100) that bake; an overlapping rollout is 409', async () => {
		shas.v1 = await bed.addCommit('backend', breakable('v1'));
		releaseIds.v1 = (await release('1.0.0', shas.v1)).id;
		const r = await rollout({
			release_id: releaseIds.v1,
			strategy: 'staged',
			stages: [
				{ percent: 10, bake_seconds: 2 },
				{ percent: 50, bake_seconds: 1 },
				{ percent: 100, bake_minutes: 0 }
			]
		});
		// Through the route, as a client sees it: the documented error shape, naming the target.
		const overlap = await callRoute(postRollout, '/api/rollouts', {
			json: { release_id: releaseIds.v1, strategy: 'immediate', target: { nodes: [bed.hosts[7]!.name] } }
		});
		expect(overlap.status).toBe(409);
		const conflict = await errorOf(overlap);
		expect(conflict.code).toBe('conflict');
		expect(conflict.message).toMatch(new RegExp(`^Rollout #${r.number} is still active on 1 of these nodes \\(`));
		expect(conflict.fields).toEqual({ target: `overlaps rollout #${r.number} (running)` });

		const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		expect(done.reason).toBeNull();
		expect(done.stages.map((s) => s.state)).toEqual(['done', 'done', 'done']);
		const members = await nodesOfRollout(r.id);
		expect([0, 1, 2].map((k) => members.filter((m) => m.stage === k).length)).toEqual([2, 8, 10]);
		expect(members.every((m) => m.state === 'succeeded')).toBe(true);
		for (const [name, commit] of await commitsOnHosts()) expect(commit, name).toBe(shas.v1);
		// Each stage was its own run, one after the other, and each node baked before it counted.
		const runs = await Promise.all(done.stages.map((s) => getRun(s.runId!)));
		expect(runs.map((x) => x.counts.succeeded)).toEqual([2, 8, 10]);
		for (let k = 1; k < 3; k++) expect(runs[k]!.startedAt! >= runs[k - 1]!.endedAt!).toBe(true);
		const t = runs[0]!.tasks[0]!;
		expect(t.steps.map((s) => s.name)).toEqual([
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
		]);
		const audit = await db().select().from(auditLog).where(eq(auditLog.targetId, r.id));
		expect(audit.map((a) => a.action)).toContain('rollout.create');
		// The release page's "which nodes run it".
		const on = await nodesOnRelease(await getRelease(releaseIds.v1));
		expect(on.map((n) => n.node).sort()).toEqual(bed.hosts.map((h) => h.name).sort());
	}, 240_000);

	it('failures in a stage pass the threshold: the rollout pauses, later stages stay untouched; a node unhealthy during the bake fails too', async () => {
		shas.v2 = await bed.addCommit('backend', breakable('v2'));
		releaseIds.v2 = (await release('1.1.0', shas.v2)).id;
		const input = {
			release_id: releaseIds.v2,
			strategy: 'staged',
			stages: [
				{ percent: 25, bake_seconds: 1 },
				{ percent: 50, bake_seconds: 4 },
				{ percent: 100, bake_seconds: 0 }
			],
			failure_threshold_percent: 10,
			min_finished_nodes: 3,
			concurrency: 5
		};
		const { preview } = await createRollout(systemActor, createRolloutSchema.parse({ ...input, dry_run: true }));
		expect(preview.stages.map((s) => s.nodes.length)).toEqual([5, 5, 10]);
		const [brokenAtVerify, brokenInBake] = preview.stages[1]!.nodes.map((n) => hostOf.get(n.name)!);
		await writeFile(marker(brokenAtVerify!, 'v2'), '1');
		const r = await rollout({ ...input, id: preview.id });
		await driveRollouts();
		expect(await stageNames(r.id, 0)).toEqual(preview.stages[0]!.nodes.map((n) => n.name).sort());

		// The second broken node passes its update, and turns unhealthy while it bakes.
		const baking = await waitFor(
			'stage 2 baking',
			async () => {
				await driveRollouts();
				const now = await getRollout(r.id);
				const runId = now.stages[1]?.runId;
				if (!runId) return null;
				const task = (await getRun(runId)).tasks.find((x) => x.nodeName === brokenInBake!.name);
				return task?.steps.some((s) => s.name === 'bake' && s.state === 'running') ? task : null;
			},
			150_000
		);
		await writeFile(marker(brokenInBake!, 'v2'), '1');

		const paused = await driveUntil(r.id, ['paused', 'completed', 'failed']);
		expect(paused.state).toBe('paused');
		expect(paused.currentStage).toBe(1);
		expect(paused.reason).toMatch(/stage 2 of 3 \(50%\): \d of \d finished nodes failed \(\d+% > the 10% threshold\)/);
		const [pausedEvent] = await db()
			.select()
			.from(events)
			.where(eq(events.type, 'rollout.paused'))
			.orderBy(asc(events.id));
		expect(pausedEvent?.data).toMatchObject({ rollout_id: r.id, stage: 1 });

		// Let the stage's nodes finish (pausing stops new starts only), then look at the hosts.
		const stageRun = await waitFor('stage 2 settled', async () => {
			const run = await getRun(paused.stages[1]!.runId!);
			// The tasks as well as the counts: getRun reads them one after the other, so a task can end in between.
			const settled = run.tasks.every((t) => t.state !== 'running' && t.state !== 'queued');
			return settled && run.counts.running + run.counts.queued === 0 ? run : null;
		});
		expect(stageRun.counts).toMatchObject({ total: 5, succeeded: 3, rolled_back: 2 });
		const bakeTask = stageRun.tasks.find((t) => t.id === baking.id)!;
		expect(bakeTask.state).toBe('rolled_back');
		expect(bakeTask.error).toMatch(/bake: unhealthy during the bake, \d+s in: backend: /);
		expect(bakeTask.steps.find((s) => s.name === 'verify' && s.phase === 'do')?.state).toBe('succeeded');
		const verifyTask = stageRun.tasks.find((t) => t.nodeName === brokenAtVerify!.name)!;
		expect(verifyTask.error).toMatch(/^verify: backend is unhealthy/);

		const commits = await commitsOnHosts();
		for (const name of await stageNames(r.id, 0)) expect(commits.get(name), name).toBe(shas.v2);
		for (const h of [brokenAtVerify!, brokenInBake!]) expect(commits.get(h.name), h.name).toBe(shas.v1);
		const stage3 = preview.stages[2]!.nodes.map((n) => n.name);
		expect(await stageNames(r.id, 2)).toEqual([]);
		for (const name of stage3) expect(commits.get(name), name).toBe(shas.v1);

		// The node's page says which rollout is moving it, and how its update went.
		expect(await activeRolloutsOfNode(idOf.get(brokenAtVerify!.name)!)).toEqual([
			expect.objectContaining({ number: r.number, stage: 1, nodeState: 'rolled_back', state: 'paused' })
		]);
		// Another turn changes nothing: the rollout waits for an operator.
		await driveRollouts();
		expect((await getRollout(r.id)).state).toBe('paused');
		releaseIds.pausedRollout = r.id;
	}, 240_000);

	it('resume acknowledges the failures seen and goes on: the last stage reaches the remaining nodes', async () => {
		const id = releaseIds.pausedRollout!;
		const resumed = await resumeRollout(systemActor, id);
		expect(resumed.stages[1]!.acknowledgedFailures).toBe(2);
		const done = await driveUntil(id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		expect(done.reason).toMatch(/2 node\(s\) failed/);
		const commits = await commitsOnHosts();
		const failed = (await nodesOfRollout(id)).filter((n) => n.state === 'rolled_back').map((n) => n.nodeName);
		expect(failed).toHaveLength(2);
		for (const h of bed.hosts) expect(commits.get(h.name), h.name).toBe(failed.includes(h.name) ? shas.v1 : shas.v2);
		for (const h of bed.hosts) await rm(marker(h, 'v2'), { force: true });
	}, 240_000);

	it('rollback protection: a release below the minimum version cannot be rolled out (400)', async () => {
		useMinimumVersion('1.2.0');
		try {
			const res = await callRoute(postRollout, '/api/rollouts', {
				json: { release_id: releaseIds.v2, strategy: 'immediate' }
			});
			expect(res.status).toBe(400);
			const error = await errorOf(res);
			expect(error.code).toBe('validation_failed');
			expect(error.fields).toEqual({
				release_id: '1.1.0 is below the minimum version 1.2.0 configured by FLOTILLA_RELEASE_MIN_VERSION'
			});
		} finally {
			useMinimumVersion(undefined);
		}
	});

	it('approval, advance, cancel, then a fleet rollback puts every changed node back, verified on the hosts', async () => {
		shas.v3 = await bed.addCommit('backend', { message: 'v3', files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' } });
		releaseIds.v3 = (await release('1.3.0', shas.v3)).id;
		const before = await commitsOnHosts();
		const r = await rollout({
			release_id: releaseIds.v3,
			strategy: 'staged',
			stages: [
				{ percent: 10, bake_seconds: 0 },
				{ percent: 50, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			],
			require_approval: true
		});
		const waiting = await driveUntil(r.id, ['waiting_approval', 'paused', 'completed']);
		expect(waiting.state).toBe('waiting_approval');
		expect(waiting.reason).toMatch(/stage 2 of 3 \(50%\) waits for approval/);
		// Without approval nothing moves on.
		await driveRollouts();
		expect(await stageNames(r.id, 1)).toEqual([]);
		const advanced = await advanceRollout(systemActor, r.id);
		expect(advanced.currentStage).toBe(1);
		const second = await driveUntil(r.id, ['waiting_approval', 'paused', 'completed']);
		expect(second.state).toBe('waiting_approval');
		const cancelled = await cancelRollout(systemActor, r.id);
		expect(cancelled.state).toBe('cancelled');
		await driveRollouts();

		const moved = [...(await stageNames(r.id, 0)), ...(await stageNames(r.id, 1))];
		expect(moved).toHaveLength(10);
		let commits = await commitsOnHosts();
		for (const h of bed.hosts) {
			expect(commits.get(h.name), h.name).toBe(moved.includes(h.name) ? shas.v3 : before.get(h.name));
		}
		const err = await advanceRollout(systemActor, r.id).catch((e: unknown) => e);
		expect((err as ServiceError).status).toBe(409);

		// Rollback protection covers the way back too: the moved nodes ran 1.1.0 (or 1.0.0) before.
		useMinimumVersion('1.2.0');
		try {
			const refused = await callRoute(postRollback, `/api/rollouts/${r.id}/rollback`, { params: { id: r.id } });
			expect(refused.status).toBe(400);
			const error = await errorOf(refused);
			expect(error.code).toBe('validation_failed');
			expect(error.message).toMatch(/^Rolling back to release 1\.[01]\.0 is below the minimum version 1\.2\.0/);
			expect(Object.keys(error.fields)).toEqual(['rollback']);
			expect(error.fields.rollback).toMatch(
				/^1\.[01]\.0 is below the minimum version 1\.2\.0 configured by FLOTILLA_RELEASE_MIN_VERSION$/
			);
			// Nothing changed: the rollout is as it was, with no rollback run.
			expect(await getRollout(r.id)).toMatchObject({ state: 'cancelled', rollbackRunId: null });
		} finally {
			useMinimumVersion(undefined);
		}
		const rolling = await rollbackRollout(systemActor, r.id);
		expect(rolling.state).toBe('rolling_back');
		const back = await driveUntil(r.id, ['rolled_back', 'failed']);
		expect(back.state).toBe('rolled_back');
		const revert = await getRun(back.rollbackRunId!);
		// Reverse stage order: the second stage's nodes went back first (phase 0 of the rollback run).
		const stageOfName = new Map((await nodesOfRollout(r.id)).map((n) => [n.nodeName, n.stage]));
		for (const t of revert.tasks) expect(t.phase).toBe(2 - stageOfName.get(t.nodeName)!);
		commits = await commitsOnHosts();
		for (const h of bed.hosts) expect(commits.get(h.name), h.name).toBe(before.get(h.name));
		const rows = await db()
			.select()
			.from(rolloutNodes)
			.where(and(eq(rolloutNodes.rolloutId, r.id), eq(rolloutNodes.state, 'reverted')));
		expect(rows).toHaveLength(10);
	}, 240_000);

	it('a console restart mid-rollout carries on from the database: the rollout completes', async () => {
		shas.v4 = await bed.addCommit('backend', { message: 'v4', files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' } });
		releaseIds.v4 = (await release('1.4.0', shas.v4)).id;
		const r = await rollout({
			release_id: releaseIds.v4,
			strategy: 'canary',
			stages: [
				{ percent: 5, bake_seconds: 2 },
				{ percent: 25, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			]
		});
		await waitFor('stage 1 baking', async () => {
			await driveRollouts();
			const runId = (await getRollout(r.id)).stages[0]?.runId;
			return runId && (await getRun(runId)).tasks.some((t) => t.steps.some((s) => s.name === 'bake'));
		});
		// The engine stops as on SIGTERM (its unfinished task is left for recovery) and starts again.
		await stopEngine();
		await startEngine({ concurrency: 50, leaseMs: 10_000, sweepMs: 1_000 });
		const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		for (const [name, commit] of await commitsOnHosts()) expect(commit, name).toBe(shas.v4);
	}, 240_000);

	it('a scheduled rollout waits for start_at; advance starts it early', async () => {
		const host = bed.hosts[0]!;
		const before = await bed.checkedOutCommit(host, 'backend');
		const r = await rollout({
			release_id: releaseIds.v1,
			strategy: 'immediate',
			target: { nodes: [host.name] },
			start_at: new Date(Date.now() + 3_600_000).toISOString()
		});
		expect(r.state).toBe('scheduled');
		await driveRollouts();
		expect((await getRollout(r.id)).state).toBe('scheduled');
		expect(await bed.checkedOutCommit(host, 'backend')).toBe(before);
		// Paused and resumed before its time, it is still scheduled.
		await pauseRollout(systemActor, r.id);
		expect((await resumeRollout(systemActor, r.id)).state).toBe('scheduled');
		await advanceRollout(systemActor, r.id);
		const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		expect(await bed.checkedOutCommit(host, 'backend')).toBe(shas.v1);
	}, 120_000);

	it('respect_windows: a node outside its maintenance window waits for it, the others go first', async () => {
		const [waiter, free] = [bed.hosts[1]!, bed.hosts[2]!];
		const before = await bed.checkedOutCommit(waiter, 'backend');
		const hhmm = (hoursFromNow: number) => new Date(Date.now() + hoursFromNow * 3_600_000).toISOString().slice(11, 16);
		const window = (start: string, end: string) =>
			windowSchema.parse({
				scope: 'node',
				target: waiter.name,
				start,
				end,
				time_zone: 'UTC',
				days: ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday']
			});
		// Read once: the minute may turn while the test waits, and the window saved is what the node waits for.
		const opens = hhmm(6);
		const shut = await saveWindow(systemActor, window(opens, hhmm(7)));
		shas.v5 = await bed.addCommit('backend', { message: 'v5', files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' } });
		releaseIds.v5 = (await release('1.5.0', shas.v5)).id;
		const r = await rollout({
			release_id: releaseIds.v5,
			strategy: 'immediate',
			target: { nodes: [waiter.name, free.name] },
			// One at a time: the node without a window must not queue behind the one that waits.
			concurrency: 1,
			respect_windows: true
		});
		expect(r.respectWindows).toBe(true);
		const detail = await waitFor('the free node updated while the other waits', async () => {
			await driveRollouts();
			const now = await getRollout(r.id);
			const d = await presentRolloutDetail(now, await getRelease(now.releaseId), await nodesOfRollout(r.id));
			const byName = new Map(d.nodes.map((n) => [n.node, n]));
			return byName.get(free.name)?.state === 'succeeded' && byName.get(waiter.name)?.state === 'waiting_window'
				? byName
				: null;
		});
		const waiting = detail.get(waiter.name)!;
		expect(waiting.step).toBe('window');
		expect(new Date(waiting.window_opens_at!).toISOString().slice(11, 16)).toBe(opens);
		expect(await bed.checkedOutCommit(free, 'backend')).toBe(shas.v5);
		expect(await bed.checkedOutCommit(waiter, 'backend')).toBe(before);

		// The window now covers the present: the waiting node sees it at its next look and is updated.
		await saveWindow(systemActor, window(hhmm(-1), hhmm(1)));
		const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		expect(await bed.checkedOutCommit(waiter, 'backend')).toBe(shas.v5);
		const task = (await getRun(done.stages[0]!.runId!)).tasks.find((t) => t.nodeName === waiter.name)!;
		expect(task.steps[0]!.name).toBe('window');
		await deleteWindow(systemActor, shut.id);
	}, 120_000);
});
