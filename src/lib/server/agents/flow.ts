import { agentStepNames } from '$lib/schemas/agents';
import type { AgentJob } from '$lib/server/db/schema';
import { StepFailed, type Flow, type Step, type StepContext } from '$lib/server/engine';
import { CLAIM_STEP, type PullFlowSpec } from '$lib/server/rollouts/pull';
import { enrolmentOf } from './enrolment';
import { abandonJob, CLAIM_DEADLINE_SECONDS, jobById, openJob, waitForJob, withdrawUnclaimed } from './jobs';
import { silence } from './status';

/**
 * A pull node's task (docs/pull-agent.md, "In a rollout"): no SSH session. Its first step writes the job and waits
 * for the agent's next poll; each of the six steps then waits for the agent's report of it, so the run shows the
 * node's steps, their output and which one failed. A failure is rolled back by the agent itself; the undo of
 * `backup`, its first step, waits for it to say how that went. A job no agent took has nothing to undo.
 */

/** Room for the agent's report to arrive after a step's own deadline on the node. */
const REPORT_MARGIN_SECONDS = 60;

function showOutput(ctx: StepContext<unknown>, step: string, output: string): void {
	for (const line of output.split('\n').filter(Boolean)) ctx.log(`${step}: ${line}`);
}

/**
 * Shows a step's output in the task's log as its batches arrive (docs/pull-agent.md, "In a rollout"): whole lines
 * while the step runs, the rest with its final report. Returns how much of the output has been shown.
 */
function showNewOutput(ctx: StepContext<unknown>, step: string, output: string, shown: number, final: boolean) {
	const end = final ? output.length : output.lastIndexOf('\n') + 1;
	if (end > shown) showOutput(ctx, step, output.slice(shown, end));
	return Math.max(end, shown);
}

function lastLine(output: string): string {
	return output.trim().split('\n').at(-1) ?? '';
}

function agentStep<P>(name: (typeof agentStepNames)[number], deadlineSeconds: number): Step<P> {
	return {
		name,
		...(name === agentStepNames[0] ? { undo: awaitRollback<P> } : {}),
		deadlineMs: (deadlineSeconds + REPORT_MARGIN_SECONDS) * 1000,
		async do(ctx) {
			let shown = 0;
			// A job that ended, or rolled back, before this step's report: the agent stopped short of it.
			const report = await waitForJob(ctx.task.id, ctx.signal, (job) => {
				const r = job.steps[name];
				if (r?.status === 'running') {
					shown = showNewOutput(ctx as StepContext<unknown>, name, r.output, shown, false);
					return undefined;
				}
				return r ?? (job.steps.rollback || job.state !== 'running' ? null : undefined);
			});
			if (!report) throw new StepFailed('the agent stopped before this step');
			showNewOutput(ctx as StepContext<unknown>, name, report.output, shown, true);
			if (report.status !== 'succeeded') {
				const detail = lastLine(report.output);
				const code = report.exit_code ?? 'no exit code (its deadline passed, or the agent restarted)';
				throw new StepFailed(`exited with ${code}${detail ? `: ${detail}` : ''}`, report.exit_code);
			}
		}
	};
}

function rollbackOutcome(job: AgentJob): 'rolled_back' | 'failed' | undefined {
	if (job.state === 'rolled_back') return 'rolled_back';
	if (job.state === 'failed' || job.state === 'abandoned') return 'failed';
	return undefined;
}

/** The agent's rollback, as it reports it (the undo of its first step: it had taken the job by then). */
async function awaitRollback<P>(ctx: StepContext<P>): Promise<void> {
	const outcome = await waitForJob(ctx.task.id, ctx.signal, rollbackOutcome);
	const job = await jobById(ctx.task.id);
	if (job?.steps.rollback) showOutput(ctx as StepContext<unknown>, 'rollback', job.steps.rollback.output);
	if (outcome !== 'rolled_back') throw new StepFailed(job?.error ?? 'the agent did not roll back');
}

export function pullFlow<P>(spec: PullFlowSpec<P>, stepDeadlineSeconds: number): Flow<P> {
	const take: Step<P> = {
		name: CLAIM_STEP,
		// Its own claim deadline ends the wait first, saying why; this one only backs it up.
		deadlineMs: (CLAIM_DEADLINE_SECONDS + REPORT_MARGIN_SECONDS) * 1000,
		async do(ctx) {
			const job = await openJob({ id: ctx.task.id, nodeId: ctx.node.id, ...(await spec.job(ctx)) });
			if (!job.claimedAt) {
				// A batch stuck in progress shows which agents have not polled, and since when (docs/pull-agent.md).
				const last = (await enrolmentOf(ctx.node.id))?.last_poll_at ?? null;
				ctx.log(`waiting for the agent's next poll (release ${job.release}); ${silence(last)}`);
			}
			// From when the job was written, so that a console restarted meanwhile does not give the agent longer.
			const due = job.createdAt.getTime() + CLAIM_DEADLINE_SECONDS * 1000;
			const claimed = await waitForJob(ctx.task.id, ctx.signal, (j) =>
				j.claimedAt ? j.claimedAt : Date.now() >= due ? null : undefined
			);
			if (claimed) {
				ctx.log(`the agent took the job at ${claimed.toISOString()}`);
				return;
			}
			const last = (await enrolmentOf(ctx.node.id))?.last_poll_at ?? null;
			const why = `the agent did not take the job within its claim deadline (${CLAIM_DEADLINE_SECONDS} s): ${silence(last)}`;
			// Withdrawn, so that a late poll does not start it; taken at the last moment, it simply goes on.
			if (await withdrawUnclaimed(ctx.task.id, why)) throw new StepFailed(why);
			ctx.log('the agent took the job at its claim deadline');
		}
	};
	return {
		kind: spec.kind,
		connects: false,
		steps: [...(spec.first ?? []), take, ...agentStepNames.map((n) => agentStep<P>(n, stepDeadlineSeconds))],
		// After the console restarted: the job's reports are all kept, so the steps can simply wait on them again.
		async inspect(ctx) {
			const job = await jobById(ctx.task.id);
			if (job?.state === 'succeeded') return 'completed';
			if (!job || job.state === 'pending' || job.state === 'running') return 'restart';
			return 'rollback';
		},
		async finished(end) {
			if (end.state !== 'succeeded') await abandonJob(end.task.id, end.error ?? `the task ended ${end.state}`);
			await spec.finished?.(end);
		}
	};
}
