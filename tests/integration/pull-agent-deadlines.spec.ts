import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { getEnrolment } from '../../src/lib/server/agents/enrolment';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { db } from '../../src/lib/server/db';
import { agentJobs } from '../../src/lib/server/db/schema';
import { getRun } from '../../src/lib/server/engine';
import { getRelease } from '../../src/lib/server/releases/releases';
import { driveRollouts } from '../../src/lib/server/rollouts/driver';
import { presentRolloutDetail } from '../../src/lib/server/rollouts/present';
import { getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { waitFor } from '../support/engine';
import {
	Agents,
	driveUntilDone,
	lines,
	pullNode,
	rolloutTo,
	addUnusedCredential,
	startPullConsole,
	type PullConsole
} from '../support/pull-agents';

/**
 * The pull agent's deadlines (docs/pull-agent.md): a step that hangs on the node is stopped at its deadline with
 * everything it started, and rolled back; a job no agent takes fails its task at the claim deadline, naming the
 * agent's last poll. Short deadlines for this file only: the console reads them when its modules load.
 */
const saved = vi.hoisted(() => {
	const before = {
		claim: process.env.FLOTILLA_AGENT_CLAIM_SECONDS,
		step: process.env.FLOTILLA_AGENT_STEP_SECONDS
	};
	process.env.FLOTILLA_AGENT_CLAIM_SECONDS = '10';
	process.env.FLOTILLA_AGENT_STEP_SECONDS = '3';
	return before;
});

let pullConsole: PullConsole;
let dir = '';
let agents: Agents;

/** The processes whose command line holds `marker`, from /proc as any user on the node sees them. */
function processesWith(marker: string): string[] {
	return readdirSync('/proc')
		.filter((p) => /^\d+$/.test(p))
		.filter((p) => {
			try {
				return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(marker);
			} catch {
				return false; // ended while we looked
			}
		});
}

beforeAll(async () => {
	pullConsole = await startPullConsole('flotilla_pull_deadlines', async () => {
		await addUnusedCredential();
		await createRole(systemActor, createRoleSchema.parse({ name: 'web', path: '/opt/web', units: ['web.service'] }));
	});
	({ dir, agents } = pullConsole);
}, 60_000);

afterAll(async () => {
	await pullConsole?.stop();
	for (const [name, value] of [
		['FLOTILLA_AGENT_CLAIM_SECONDS', saved.claim],
		['FLOTILLA_AGENT_STEP_SECONDS', saved.step]
	] as const) {
		if (value === undefined) delete process.env[name];
		else process.env[name] = value;
	}
});

describe('pull agent deadlines', () => {
	it('a step that hangs is stopped at its deadline with every process it started (one ignoring TERM included), rolled back, and recorded failed with the reason', async () => {
		const s = await pullNode('pull-s');
		// A unique marker in the hung process's command line: GNU sleep takes fractional seconds.
		const marker = `1000.${randomBytes(4).readUInt32BE()}`;
		const hang = join(dir, 'hang.sh');
		// The step's shell starts one that ignores TERM and becomes a sleep that hangs: a child that outlives its
		// shell's TERM, reparented once that shell is gone.
		await writeFile(hang, `trap '' TERM\necho 'migrating: waiting on a lock'\nexec sleep ${marker}\n`);
		const { rollout, sha, version } = await rolloutTo(['pull-s']);
		const agent = agents.start('pull-s', s.id, s.secret, { UPDATE_MIGRATE_CMD: `sh ${hang}; echo never` });
		// The hung process exists while the step runs (so that its absence later means something).
		await waitFor(
			'the hung process',
			async () => {
				await driveRollouts();
				return processesWith(marker).length > 0;
			},
			30_000
		);
		const done = await driveUntilDone(rollout.id);
		// Gone by the time the console heard of the failure: the agent reports once the step's tree is dead.
		expect(processesWith(marker)).toEqual([]);
		expect(done.state).toBe('paused');
		const task = (await getRun(done.stages[0]!.runId!)).tasks[0]!;
		expect(task.state).toBe('rolled_back');
		expect(task.error).toBe(
			"migrate: exited with no exit code (its deadline passed, or the agent restarted): flotilla-agent: the step's deadline of 3s passed: stopped"
		);
		expect(task.steps.map((st) => `${st.phase} ${st.name} ${st.state}`)).toEqual([
			'do window succeeded',
			'do agent succeeded',
			'do backup succeeded',
			'do pull succeeded',
			'do migrate failed',
			'undo backup succeeded'
		]);
		// Never ran past the hang; rolled back once.
		expect(await lines(agent.log)).toEqual(['backup', 'pull', 'rollback'].map((st) => `${st} ${version} ${sha}`));
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, task.id));
		expect(job!.state).toBe('rolled_back');
		expect(job!.steps.migrate).toMatchObject({
			status: 'failed',
			exit_code: null,
			output: "migrating: waiting on a lock\nflotilla-agent: the step's deadline of 3s passed: stopped\n"
		});
		const [row] = await nodesOfRollout(rollout.id);
		expect(row).toMatchObject({ state: 'rolled_back', error: task.error });
		await agents.kill(agent);
	}, 90_000);

	it('a job no agent takes fails its task at the claim deadline, naming since when the agent has not polled; a stage in progress says so of each silent agent; the withdrawn job is never run', async () => {
		const t = await pullNode('pull-t');
		const u = await pullNode('pull-u');
		const v = await pullNode('pull-v');
		// pull-t's agent polled once and then fell silent (killed); pull-u's never ran at all.
		const once = agents.start('pull-t', t.id, t.secret);
		await waitFor('pull-t polling', async () => (await getEnrolment(t.id)).last_poll_at);
		await agents.kill(once);
		// Read once it is dead: it may have polled again meanwhile.
		const lastPollT = (await getEnrolment(t.id)).last_poll_at!;
		agents.start('pull-v', v.id, v.secret);
		const { rollout } = await rolloutTo(['pull-t', 'pull-u', 'pull-v'], {
			failure_threshold_percent: 50,
			min_finished_nodes: 3
		});

		// While the stage waits: the detail says which agents are silent, and since when.
		const whyOf = async () => {
			const r = await getRollout(rollout.id);
			const detail = await presentRolloutDetail(r, await getRelease(r.releaseId), await nodesOfRollout(r.id));
			return Object.fromEntries(detail.nodes.map((n) => [n.node, n.why]));
		};
		const waiting = await waitFor(
			'both silent agents named',
			async () => {
				await driveRollouts();
				const why = await whyOf();
				const silent = (n: string) => why[n]?.startsWith('waiting for its agent');
				return silent('pull-t') && silent('pull-u') ? why : null;
			},
			30_000
		);
		expect(waiting).toMatchObject({
			'pull-t': `waiting for its agent to take the job: no poll since ${lastPollT}`,
			'pull-u': 'waiting for its agent to take the job: it has never polled'
		});

		const done = await driveUntilDone(rollout.id);
		expect(done.state).toBe('paused');
		expect(done.reason).toMatch(/2 of 3 finished nodes failed/);
		const rows = Object.fromEntries((await nodesOfRollout(rollout.id)).map((n) => [n.nodeName, [n.state, n.error]]));
		expect(rows).toEqual({
			'pull-t': [
				'failed',
				`agent: the agent did not take the job within its claim deadline (10 s): no poll since ${lastPollT}`
			],
			'pull-u': [
				'failed',
				'agent: the agent did not take the job within its claim deadline (10 s): it has never polled'
			],
			'pull-v': ['succeeded', null]
		});
		const run = await getRun(done.stages[0]!.runId!);
		const silent = run.tasks.find((x) => x.nodeName === 'pull-u')!;
		// Nothing was asked of the node, so nothing is undone: failed, not rolled back.
		expect(silent.steps.map((st) => `${st.phase} ${st.name} ${st.state}`)).toEqual([
			'do window succeeded',
			'do agent failed'
		]);
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, silent.id));
		expect(job).toMatchObject({ state: 'abandoned', claimedAt: null });

		// pull-u's agent turns up late: its polls find no job, and it runs nothing.
		const late = agents.start('pull-u', u.id, u.secret);
		await waitFor('the late agent polling', async () => (await getEnrolment(u.id)).last_poll_at !== null);
		const [after] = await db().select().from(agentJobs).where(eq(agentJobs.id, silent.id));
		expect(after).toMatchObject({ state: 'abandoned', claimedAt: null });
		expect(await lines(late.log)).toEqual([]);
		await agents.kill(late);
	}, 90_000);
});
