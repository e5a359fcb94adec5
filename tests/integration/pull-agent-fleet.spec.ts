import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { createEnrolToken } from '../../src/lib/server/agents/enrol-tokens';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { db } from '../../src/lib/server/db';
import { agentEnrolments, agentJobs, type Node } from '../../src/lib/server/db/schema';
import { getRun } from '../../src/lib/server/engine';
import { previewStages } from '../../src/lib/server/rollouts/membership';
import { nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { waitFor } from '../support/engine';
import {
	Agents,
	driveUntilDone,
	lines,
	pullNode,
	rolloutTo,
	type Agent,
	startPullConsole,
	type PullConsole
} from '../support/pull-agents';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * The pull agent's headline case (docs/pull-agent.md, "In a rollout"): five agents running as processes on this
 * machine (no SSH), enrolled with one-time tokens, in staged rollouts together with real sshd testbed hosts.
 */

let pullConsole: PullConsole;
let dir = '';
let agents: Agents;
let bed: Testbed;
let sshNodes: Node[];

const STAGES = [
	{ percent: 40, bake_seconds: 1 },
	{ percent: 100, bake_seconds: 1 }
];
const SIX = ['backup', 'pull', 'migrate', 'smoke', 'switch', 'health'];

beforeAll(async () => {
	pullConsole = await startPullConsole('flotilla_pull_fleet', async () => {
		bed = await startTestbed({ hosts: 2, firstHost: 133, roles: ['backend'] });
		sshNodes = await registerTestbedNodes(bed, () => ({ roles: ['backend'] }));
		await createRole(
			systemActor,
			createRoleSchema.parse({ name: 'backend', path: '/opt/backend', units: ['backend.service'] })
		);
	});
	({ dir, agents } = pullConsole);
}, 120_000);

afterAll(async () => {
	await pullConsole?.stop();
	await bed?.stop();
});

describe('five pull agents and two SSH nodes in staged rollouts', () => {
	it('all succeed stage by stage; then an agent whose smoke fails rolls back, reports rolled_back, and the threshold pauses the rollout on it', async () => {
		// Five nodes the console does not reach, each enrolled by its agent exchanging a one-time token.
		const pulls: { id: string; name: string; agent: Agent; failSmoke: string }[] = [];
		for (let i = 1; i <= 5; i++) {
			const name = `agent-${i}`;
			const { id } = await pullNode(name, ['backend'], false);
			const { token } = await createEnrolToken(systemActor, id, { expires_in_minutes: 60 });
			const home = join(dir, name);
			const failSmoke = join(home, 'fail-smoke');
			const agent = agents.start(name, id, '', {
				FLOTILLA_ENROL_TOKEN: token,
				// Fails only once the test says so (the same agent takes part in both rollouts).
				UPDATE_SMOKE_CMD: `if [ -e ${failSmoke} ]; then echo 'smoke: /health answered 503'; exit 3; fi; echo "smoke $FLOTILLA_RELEASE $FLOTILLA_COMMIT" >> ${join(home, 'steps.log')}`
			});
			pulls.push({ id, name, agent, failSmoke });
		}
		await waitFor(
			'five enrolled agents polling',
			async () => (await db().select().from(agentEnrolments)).filter((e) => e.agentVersion === '1.0.0').length === 5,
			30_000
		);
		const names = [...sshNodes.map((n) => n.name), ...pulls.map((p) => p.name)];
		const ids = [...sshNodes.map((n) => n.id), ...pulls.map((p) => p.id)];
		const nameOf = new Map([...sshNodes, ...pulls].map((n) => [n.id, n.name]));
		const staged = { strategy: 'staged', stages: STAGES, concurrency: 5 };

		// First rollout: every node, SSH or pull, succeeds, stage by stage.
		const sha1 = await bed.addCommit('backend');
		const first = await rolloutTo(names, { ...staged, failure_threshold_percent: 0, min_finished_nodes: 1 }, sha1);
		const planned = previewStages(first.rollout.id, [40, 100], ids).map((s) => s.map((id) => nameOf.get(id)).sort());
		const done = await driveUntilDone(first.rollout.id, 180_000);
		expect(done.state).toBe('completed');
		const ranStages = await Promise.all(
			done.stages.map(async (s) => (await getRun(s.runId!)).tasks.map((t) => [t.nodeName, t.state] as const))
		);
		// Each stage ran its own nodes (3 of 7, then the other 4), each in its own run, all succeeded.
		expect(ranStages.map((tasks) => tasks.map(([n]) => n).sort())).toEqual(planned);
		expect(planned.map((s) => s.length)).toEqual([3, 4]);
		expect(ranStages.flat().every(([, state]) => state === 'succeeded')).toBe(true);
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, 'backend')).toBe(sha1);
		for (const p of pulls) {
			expect(await lines(p.agent.log)).toEqual(SIX.map((s) => `${s} ${first.version} ${sha1}`));
		}

		// Second rollout: a pull node of the first stage fails its smoke.
		const sha2 = await bed.addCommit('backend');
		const second = await rolloutTo(names, { ...staged, failure_threshold_percent: 20, min_finished_nodes: 3 }, sha2);
		const [firstStage, secondStage] = previewStages(second.rollout.id, [40, 100], ids).map((s) =>
			s.map((id) => nameOf.get(id)!)
		);
		// Three of the seven nodes, at most two of them SSH: always a pull node among them.
		const failing = pulls.find((p) => firstStage!.includes(p.name))!;
		await writeFile(failing.failSmoke, '');
		const paused = await driveUntilDone(second.rollout.id, 180_000);
		expect(paused.state).toBe('paused');
		expect(paused.reason).toMatch(/1 of 3 finished nodes failed \(33% > the 20% threshold\)/);
		expect(paused.stages[1]!.runId ?? null).toBeNull();
		const rows = Object.fromEntries(
			(await nodesOfRollout(second.rollout.id)).map((n) => [n.nodeName, [n.stage, n.state, n.error]])
		);
		expect(rows).toEqual(
			Object.fromEntries(
				firstStage!.map((n) =>
					n === failing.name
						? [n, [0, 'rolled_back', 'smoke: exited with 3: smoke: /health answered 503']]
						: [n, [0, 'succeeded', null]]
				)
			)
		);
		const run = await getRun(paused.stages[0]!.runId!);
		const bad = run.tasks.find((t) => t.nodeName === failing.name)!;
		expect(bad.state).toBe('rolled_back');
		expect(bad.steps.map((s) => `${s.phase} ${s.name} ${s.state}`)).toEqual([
			'do window succeeded',
			'do agent succeeded',
			'do backup succeeded',
			'do pull succeeded',
			'do migrate succeeded',
			'do smoke failed',
			'undo backup succeeded'
		]);
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, bad.id));
		expect(job!.state).toBe('rolled_back');
		expect(job!.steps.rollback).toMatchObject({ status: 'succeeded', exit_code: 0 });
		// The failing agent ran its rollback command (never switched); the others of the stage ran all six.
		for (const p of pulls) {
			const second2 = (await lines(p.agent.log)).slice(SIX.length);
			if (p === failing) {
				expect(second2).toEqual(['backup', 'pull', 'migrate', 'rollback'].map((s) => `${s} ${second.version} ${sha2}`));
			} else if (firstStage!.includes(p.name)) {
				expect(second2).toEqual(SIX.map((s) => `${s} ${second.version} ${sha2}`));
			} else {
				// In the stage the pause held back: nothing ran.
				expect(secondStage).toContain(p.name);
				expect(second2).toEqual([]);
			}
		}
		for (const h of bed.hosts) {
			expect(await bed.checkedOutCommit(h, 'backend')).toBe(firstStage!.includes(h.name) ? sha2 : sha1);
		}
	}, 420_000);
});
