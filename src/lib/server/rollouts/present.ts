import type { Release, Rollout, RolloutNode } from '$lib/server/db/schema';
import { getRun } from '$lib/server/engine';
import { presentRelease } from '$lib/server/releases/releases';
import { failuresOf, stageCounts } from './driver';
import { CLAIM_STEP, pullWaitingWhy } from './pull';
import { windowOpenings } from './windows';

/** What the API answers for a rollout; with `detail`, its stages' progress and its nodes. */
export function presentRollout(r: Rollout, release?: Release) {
	return {
		id: r.id,
		number: r.number,
		release_id: r.releaseId,
		release: release ? { version: release.version, sha: release.sha, channel: release.channel } : undefined,
		target: r.target,
		strategy: r.strategy,
		state: r.state,
		reason: r.reason,
		current_stage: r.currentStage,
		stages: r.stages.map((s) => ({
			percent: s.percent,
			bake_seconds: s.bakeSeconds,
			state: s.state,
			run_id: s.runId ?? null,
			started_at: s.startedAt ?? null,
			ended_at: s.endedAt ?? null,
			acknowledged_failures: s.acknowledgedFailures ?? 0
		})),
		failure_threshold_percent: r.failureThresholdPercent,
		min_finished_nodes: r.minFinishedNodes,
		concurrency: r.concurrency,
		require_approval: r.requireApproval,
		respect_windows: r.respectWindows,
		start_at: r.startAt?.toISOString() ?? null,
		rollback_run_id: r.rollbackRunId,
		created_by: r.createdBy,
		created_at: r.createdAt.toISOString(),
		ended_at: r.endedAt?.toISOString() ?? null
	};
}

/**
 * Why a node of a started stage has not finished yet (docs/releases.md, "A stage in progress"): the runbook's
 * "stuck in progress" answered per node. Null once its task ended.
 */
function whyUnfinished(
	r: Rollout,
	run: Awaited<ReturnType<typeof getRun>>,
	task: { state: string; dispatchedAt: Date | null },
	step: string | null
): string | null {
	if (task.state === 'running') return step ? `on its ${step} step` : 'starting';
	if (task.state !== 'queued') return null;
	// Handed to the engine's queue already: it holds one of the stage's slots and waits for a worker of the engine.
	if (task.dispatchedAt) {
		return `queued: handed to the engine at ${task.dispatchedAt.toISOString()}, waiting for a free engine worker`;
	}
	if (run.state === 'paused' || r.state === 'paused') {
		return 'not started: the rollout is paused (resume, or advance once the stage settles)';
	}
	const taken = run.tasks.filter((t) => t.state === 'running' || (t.state === 'queued' && t.dispatchedAt)).length;
	return `queued: the stage updates ${r.concurrency} node(s) at a time and ${taken} are taken`;
}

function windowWhy(opens: Date | null): string {
	return opens
		? `waiting for its maintenance window, which opens at ${opens.toISOString()}`
		: 'waiting for its maintenance window, which never opens';
}

/** The detail: per stage the run's counts and failure rate, and per node its stage, state and live task state. */
export async function presentRolloutDetail(r: Rollout, release: Release, nodes: RolloutNode[]) {
	const base = presentRollout(r, release);
	const taskState = new Map<
		string,
		{
			state: string;
			task_id: string;
			run_id: string;
			step: string | null;
			step_started_at: string | null;
			why: string | null;
			steps: string[];
		}
	>();
	const stages = await Promise.all(
		r.stages.map(async (s, k) => {
			if (!s.runId) return { ...base.stages[k]!, counts: null, failure_rate_percent: null, run_number: null };
			const run = await getRun(s.runId);
			for (const t of run.tasks) {
				const step = t.steps.findLast((x) => x.state === 'running' || x.state === 'failed') ?? t.steps.at(-1);
				const running = step?.state === 'running' ? step : null;
				taskState.set(t.nodeId, {
					state: t.state,
					task_id: t.id,
					run_id: run.id,
					step: step?.name ?? null,
					step_started_at: running ? running.startedAt.toISOString() : null,
					why: whyUnfinished(r, run, t, running?.name ?? null),
					steps: t.steps.map((x) => (x.phase === 'undo' ? `undo ${x.name}` : x.name))
				});
			}
			const counts = await stageCounts(r, k, run.counts);
			const { failed, finished } = failuresOf(counts);
			return {
				...base.stages[k]!,
				run_number: run.number,
				run_state: run.state,
				counts,
				failure_rate_percent: finished ? Math.round((failed * 1000) / finished) / 10 : 0
			};
		})
	);
	// A pull node whose task waits for its agent to take the job: since when has the agent been silent?
	const silent = await pullWaitingWhy(
		[...taskState].filter(([, t]) => t.step === CLAIM_STEP && t.step_started_at).map(([id]) => id)
	);
	for (const [id, why] of silent) taskState.get(id)!.why = why;
	// A node whose task is on its `window` step waits for its maintenance window: when does it open?
	const waiting = nodes
		.filter((n) => {
			const t = taskState.get(n.nodeId);
			return n.state === 'pending' && t?.state === 'running' && t.step === 'window';
		})
		.map((n) => n.nodeId);
	const openings = r.respectWindows ? await windowOpenings(waiting) : new Map<string, Date | null>();
	const stateOf = (n: RolloutNode) => {
		if (n.state !== 'pending') return n.state;
		if (openings.has(n.nodeId)) return 'waiting_window';
		return taskState.get(n.nodeId)?.state ?? 'pending';
	};
	return {
		...base,
		release: presentRelease(release),
		stages,
		nodes: nodes.map((n) => ({
			node_id: n.nodeId,
			node: n.nodeName,
			stage: n.stage,
			state: stateOf(n),
			window_opens_at: openings.get(n.nodeId)?.toISOString() ?? null,
			step: taskState.get(n.nodeId)?.step ?? null,
			step_started_at: taskState.get(n.nodeId)?.step_started_at ?? null,
			why: openings.has(n.nodeId) ? windowWhy(openings.get(n.nodeId)!) : (taskState.get(n.nodeId)?.why ?? null),
			run_id: taskState.get(n.nodeId)?.run_id ?? null,
			task_id: taskState.get(n.nodeId)?.task_id ?? null,
			steps: taskState.get(n.nodeId)?.steps ?? [],
			// Only the pull flow has the claim step: the task went through the node's agent, not SSH.
			pull: taskState.get(n.nodeId)?.steps.includes(CLAIM_STEP) ?? false,
			previous: n.previous,
			error: n.error
		}))
	};
}
