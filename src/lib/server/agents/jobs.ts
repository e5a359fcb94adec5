import { setTimeout as sleep } from 'node:timers/promises';
import { and, asc, eq, inArray, sql } from 'drizzle-orm';
import type { AgentReport } from '$lib/schemas/agents';
import { db } from '$lib/server/db';
import { agentEnrolments, agentJobs, type AgentJob, type AgentJobState } from '$lib/server/db/schema';
import { conflict, notFound } from '$lib/server/errors';
import type { AgentCaller } from './requests';

/**
 * The jobs pull agents run (docs/pull-agent.md, "Jobs"): an engine task writes one and waits on it; the agent
 * takes it at its next poll and reports each step; the task's steps follow those reports.
 */

/** How long the agent is told to wait between polls when there is nothing to do. */
export const POLL_SECONDS = Number(process.env.FLOTILLA_AGENT_POLL_SECONDS ?? 30);
/** Each of the six steps' deadline on the node. */
export const STEP_DEADLINE_SECONDS = Number(process.env.FLOTILLA_AGENT_STEP_SECONDS ?? 600);
/** How long a task waits for the agent to take its job before it fails. */
export const CLAIM_DEADLINE_SECONDS = Number(process.env.FLOTILLA_AGENT_CLAIM_SECONDS ?? 1800);

export const endedStates: AgentJobState[] = ['succeeded', 'rolled_back', 'failed', 'abandoned'];
const activeStates: AgentJobState[] = ['pending', 'running'];

export interface JobOffer {
	id: string;
	release: string;
	/** `role=commit` pairs, space-separated: simple for a shell to read. */
	targets: string;
	/** The first role's commit, for a node with one role. */
	commit: string;
	step_deadline_seconds: number;
}

function offer(job: AgentJob): JobOffer {
	const pairs = Object.entries(job.targets).sort(([a], [b]) => a.localeCompare(b));
	return {
		id: job.id,
		release: job.release,
		targets: pairs.map(([role, commit]) => `${role}=${commit}`).join(' '),
		commit: pairs[0]?.[1] ?? '',
		step_deadline_seconds: job.stepDeadlineSeconds
	};
}

/** A poll: the node's job (taken now if it was waiting), or none. */
export async function nextJob(
	caller: AgentCaller,
	input: { agent_version: string }
): Promise<{ job: JobOffer | null; poll_seconds: number }> {
	return db().transaction(async (tx) => {
		await tx
			.update(agentEnrolments)
			.set({ lastPollAt: new Date(), agentVersion: input.agent_version })
			.where(eq(agentEnrolments.nodeId, caller.nodeId));
		const [job] = await tx
			.select()
			.from(agentJobs)
			.where(and(eq(agentJobs.nodeId, caller.nodeId), inArray(agentJobs.state, activeStates)))
			.orderBy(asc(agentJobs.createdAt))
			.limit(1)
			.for('update');
		if (!job) return { job: null, poll_seconds: POLL_SECONDS };
		if (job.state === 'pending') {
			await tx.update(agentJobs).set({ state: 'running', claimedAt: new Date() }).where(eq(agentJobs.id, job.id));
		}
		return { job: offer(job), poll_seconds: POLL_SECONDS };
	});
}

/**
 * One step's result. A report is applied once: one resent after the agent restarted (its number already seen)
 * is acknowledged and changes nothing. `health` succeeding ends the job; so does the rollback's result.
 */
export async function applyReport(
	caller: AgentCaller,
	r: AgentReport
): Promise<{ applied: boolean; state: AgentJobState }> {
	return db().transaction(async (tx) => {
		const [job] = await tx
			.select()
			.from(agentJobs)
			.where(and(eq(agentJobs.id, r.job), eq(agentJobs.nodeId, caller.nodeId)))
			.for('update');
		if (!job) throw notFound(`Job ${r.job} of this node`);
		if (r.seq <= job.lastSeq) return { applied: false, state: job.state };
		if (job.state !== 'running') throw conflict(`Job ${r.job} is ${job.state}`, { job: `is ${job.state}` });
		const state: AgentJobState =
			r.status === 'running'
				? 'running'
				: r.step === 'rollback'
					? r.status === 'succeeded'
						? 'rolled_back'
						: 'failed'
					: r.step === 'health' && r.status === 'succeeded'
						? 'succeeded'
						: 'running';
		const ended = endedStates.includes(state);
		// Output arrives in batches while the step runs; each batch, and the final report, adds to what came before.
		const before = job.steps[r.step];
		const output = before?.status === 'running' ? before.output + r.output : r.output;
		const report = { status: r.status, exit_code: r.exit_code, output, at: new Date().toISOString() };
		await tx
			.update(agentJobs)
			.set({
				steps: sql`${agentJobs.steps} || ${JSON.stringify({ [r.step]: report })}::jsonb`,
				lastSeq: r.seq,
				state,
				...(ended ? { endedAt: new Date() } : {}),
				...(r.step === 'rollback' && r.status === 'failed' ? { error: 'the rollback command failed' } : {})
			})
			.where(eq(agentJobs.id, job.id));
		return { applied: true, state };
	});
}

export async function jobById(id: string): Promise<AgentJob | undefined> {
	const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, id));
	return job;
}

/** Writes the task's job, or starts it over when an earlier attempt of the task ended. */
export async function openJob(spec: {
	id: string;
	nodeId: string;
	release: string;
	targets: Record<string, string>;
}): Promise<AgentJob> {
	const fresh = {
		state: 'pending' as const,
		release: spec.release,
		targets: spec.targets,
		stepDeadlineSeconds: STEP_DEADLINE_SECONDS,
		steps: {},
		lastSeq: 0,
		error: null,
		claimedAt: null,
		endedAt: null
	};
	await db()
		.insert(agentJobs)
		.values({ id: spec.id, nodeId: spec.nodeId, ...fresh })
		.onConflictDoUpdate({
			target: agentJobs.id,
			set: { ...fresh, createdAt: new Date() },
			setWhere: inArray(agentJobs.state, endedStates)
		});
	return (await jobById(spec.id))!;
}

/** Ends a job the agent did not finish (its task gave up waiting, or was cancelled). */
export async function abandonJob(id: string, error: string): Promise<void> {
	await db()
		.update(agentJobs)
		.set({ state: 'abandoned', error, endedAt: new Date() })
		.where(and(eq(agentJobs.id, id), inArray(agentJobs.state, activeStates)));
}

/**
 * Withdraws a job no agent took by its claim deadline, so that a late poll does not start it. False when the
 * agent took it meanwhile: then the task goes on with it.
 */
export async function withdrawUnclaimed(id: string, error: string): Promise<boolean> {
	const gone = await db()
		.update(agentJobs)
		.set({ state: 'abandoned', error, endedAt: new Date() })
		.where(and(eq(agentJobs.id, id), eq(agentJobs.state, 'pending')))
		.returning({ id: agentJobs.id });
	return gone.length > 0;
}

/** Polls the job until `done` says so; the caller's deadline or cancel ends the wait through `signal`. */
export async function waitForJob<T>(
	id: string,
	signal: AbortSignal,
	done: (job: AgentJob) => T | undefined
): Promise<T> {
	for (;;) {
		const job = await jobById(id);
		if (!job) throw new Error(`Job ${id} is gone`);
		const result = done(job);
		if (result !== undefined) return result;
		await sleep(500, undefined, { signal });
	}
}
