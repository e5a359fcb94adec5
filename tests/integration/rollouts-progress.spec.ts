import { randomBytes } from 'node:crypto';
import { readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { updateNodeSchema } from '../../src/lib/schemas/nodes';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase } from '../../src/lib/server/db';
import type { Rollout } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { updateNode } from '../../src/lib/server/fleet/nodes';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease, getRelease } from '../../src/lib/server/releases/releases';
import { hmacSignature } from '../../src/lib/server/releases/signing';
import {
	advanceRollout,
	cancelRollout,
	driveRollouts,
	pauseRollout,
	rollbackRollout
} from '../../src/lib/server/rollouts/driver';
import { presentRolloutDetail } from '../../src/lib/server/rollouts/present';
import { createRollout, getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { freshPostgres } from '../support/databases';
import { waitFor } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * A rollout while it moves, on three real sshd hosts (127.0.1.246–248) with a git role `web`: a node that joins
 * the target mid-rollout is taken by a later stage (the driver reads the target again), and a stage in progress
 * says, per unfinished node, why it has not finished (docs/releases.md, "A stage in progress"); a `push` role is
 * deployed and rolled back by rollouts like a git role.
 */

const SECRET = 'rollout-progress-signing-secret-01';
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const ids: string[] = [];

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

async function rollout(input: Record<string, unknown>): Promise<Rollout> {
	const { rollout } = await createRollout(systemActor, createRolloutSchema.parse(input));
	return rollout!;
}

async function driveUntil(id: string, states: Rollout['state'][]): Promise<Rollout> {
	return waitFor(
		`rollout in ${states.join('/')}`,
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return states.includes(r.state) ? r : null;
		},
		120_000
	);
}

async function detailOf(id: string) {
	const r = await getRollout(id);
	const d = await presentRolloutDetail(r, await getRelease(r.releaseId), await nodesOfRollout(id));
	return new Map(d.nodes.map((n) => [n.node, n]));
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 246, roles: ['web'] });
	pg = await freshPostgres('flotilla_rollouts_progress');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	useReleaseKeys({ ed25519: [], hmacSecret: SECRET });
	registerDomains();
	// The third host is a node of the fleet, but not (yet) of the role the release deploys to.
	const rows = await registerTestbedNodes(bed, (_, i) => ({ roles: i < 2 ? ['web'] : [] }));
	ids.push(...rows.map((r) => r.id));
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: 'web',
			path: '/opt/web',
			units: ['web.service'],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
			health_timeout_seconds: 3
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

describe('a rollout in progress', () => {
	const healthy = { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' };
	let first = '';

	it('a node that joins the target mid-rollout is taken by the next stage and updated on its host', async () => {
		first = await bed.addCommit('web', { message: 'v1', files: healthy });
		const rel = await release('1.0.0', first);
		const before = await bed.checkedOutCommit(bed.hosts[2]!, 'web');
		const r = await rollout({
			release_id: rel.id,
			strategy: 'staged',
			stages: [
				{ percent: 50, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			],
			require_approval: true
		});
		await driveUntil(r.id, ['waiting_approval']);
		const stage1 = (await nodesOfRollout(r.id)).map((n) => [n.nodeId, n.stage]);
		expect(stage1).toHaveLength(1);
		expect(stage1[0]![0]).not.toBe(ids[2]);

		// The operator gives the third node the role while the rollout waits between its stages.
		await updateNode(systemActor, ids[2]!, updateNodeSchema.parse({ roles: ['web'] }));
		expect(await bed.checkedOutCommit(bed.hosts[2]!, 'web')).toBe(before);
		await advanceRollout(systemActor, r.id);
		const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');

		const members = await nodesOfRollout(r.id);
		expect(members.map((n) => [n.nodeId, n.stage]).sort()).toEqual(
			[...stage1, ...ids.filter((id) => id !== stage1[0]![0]).map((id) => [id, 1])].sort()
		);
		expect(members.every((m) => m.state === 'succeeded')).toBe(true);
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, 'web'), h.name).toBe(first);
	}, 180_000);

	it('a stage in progress names, per unfinished node, why: its step, a busy slot, a pause', async () => {
		const second = await bed.addCommit('web', { message: 'v2', files: healthy });
		const rel = await release('1.1.0', second);
		// Two nodes at a time on an engine of one worker, baking long enough to be looked at: the first bakes, the
		// second is handed to the engine and waits for its worker, the third waits for one of the two slots.
		await stopEngine();
		await startEngine({ concurrency: 1, leaseMs: 10_000, sweepMs: 1_000 });
		const r = await rollout({
			release_id: rel.id,
			strategy: 'immediate',
			stages: [{ percent: 100, bake_seconds: 120 }],
			concurrency: 2
		});
		const baking = await waitFor(
			'a node baking',
			async () => {
				await driveRollouts();
				const d = await detailOf(r.id);
				return [...d.values()].find((n) => n.step === 'bake' && n.state === 'running') ?? null;
			},
			120_000
		);
		let nodes = await detailOf(r.id);
		expect(nodes.size).toBe(3);
		expect(baking.why).toBe('on its bake step');
		const queued = [...nodes.values()].filter((n) => n.node !== baking.node);
		for (const n of queued) expect(n.state, n.node).toBe('queued');
		const whys = queued.map((n) => n.why!).sort();
		expect(whys[0]).toMatch(/^queued: handed to the engine at \S+, waiting for a free engine worker$/);
		expect(whys[1]).toBe('queued: the stage updates 2 node(s) at a time and 2 are taken');
		const waiting = queued.find((n) => n.why === whys[1])!;

		await pauseRollout(systemActor, r.id);
		nodes = await detailOf(r.id);
		expect(nodes.get(baking.node)!.why).toBe('on its bake step');
		expect(nodes.get(waiting.node)!.why).toBe(
			'not started: the rollout is paused (resume, or advance once the stage settles)'
		);

		// Cancelled, the baking node is undone and the others never start: nothing is left unfinished.
		const cancelled = await cancelRollout(systemActor, r.id);
		await waitFor('the stage settled', async () => {
			const run = await getRun(cancelled.stages[0]!.runId!);
			return run.counts.running + run.counts.queued === 0 ? run : null;
		});
		nodes = await detailOf(r.id);
		for (const n of nodes.values()) expect(n.why, n.node).toBeNull();
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, 'web'), h.name).toBe(first);
	}, 180_000);

	it('a push role takes a release through a rollout, and a fleet rollback switches it back', async () => {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'site',
				method: 'push',
				path: '/opt/site',
				// The console's own checkout of the role: the testbed's working clone of the web repository.
				source_repo: join(bed.dir, 'origins', 'web.work'),
				units: ['site.service'],
				health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
				health_timeout_seconds: 3
			})
		);
		for (const id of ids) await updateNode(systemActor, id, updateNodeSchema.parse({ roles: ['web', 'site'] }));
		const current = (i: number) => readlink(join(bed.hosts[i]!.root, 'opt/site/current'));
		const deploy = async (version: string, sha: string) => {
			const rel = await release(version, sha);
			const r = await rollout({ release_id: rel.id, strategy: 'immediate', target: { roles: ['site'] } });
			const done = await driveUntil(r.id, ['completed', 'paused', 'failed']);
			expect(done.state).toBe('completed');
			for (let i = 0; i < 3; i++) expect(await current(i), bed.hosts[i]!.name).toBe(`releases/${sha}`);
			return done;
		};
		const a = await bed.addCommit('web', { message: 'site a', files: healthy });
		await deploy('1.2.0', a);
		const b = await bed.addCommit('web', { message: 'site b', files: healthy });
		const second = await deploy('1.3.0', b);
		// Only the role the target names moved: the git role stays on what the earlier rollouts left.
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, 'web'), h.name).toBe(first);

		await rollbackRollout(systemActor, second.id);
		const back = await driveUntil(second.id, ['rolled_back', 'failed']);
		expect(back.state).toBe('rolled_back');
		for (let i = 0; i < 3; i++) expect(await current(i), bed.hosts[i]!.name).toBe(`releases/${a}`);
	}, 240_000);
});
