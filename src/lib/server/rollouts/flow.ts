import { setTimeout as sleep } from 'node:timers/promises';
import { and, eq } from 'drizzle-orm';
import { z } from 'zod';
import { codeSyncParams, deployFlow, roleHealthProblems, type RoleProgress } from '$lib/server/codesync/flow';
import { db } from '$lib/server/db';
import { releases, rolloutNodes, rollouts } from '$lib/server/db/schema';
import { StepFailed, type StepContext, type TaskEnd } from '$lib/server/engine';
import { pullVariant, type PullJob } from './pull';
import { windowStep } from './windows';

/**
 * A rollout stage on one node (docs/releases.md, "Stages"): Code Sync's deploy of the release's commit, then a
 * bake — the roles' health re-probed for the stage's bake time. A node that turns unhealthy during the bake fails
 * (and its update is undone like any failed update), even though its update step passed.
 */

export const rolloutStageParams = codeSyncParams.extend({
	rollout_id: z.uuid(),
	bake_seconds: z.number().int().min(0).max(43_200),
	respect_windows: z.boolean().default(false)
});
export type RolloutStageParams = z.infer<typeof rolloutStageParams>;

/** How often the bake probes: about five times a bake, at least every second, at most every 30 s. */
export function probeEverySeconds(bakeSeconds: number): number {
	return Math.max(1, Math.min(30, Math.floor(bakeSeconds / 5)));
}

async function recordNode(end: TaskEnd<{ rollout_id: string }>, state: string): Promise<void> {
	const list = (end.memo.roles as RoleProgress[] | undefined) ?? [];
	const previous = list.length ? Object.fromEntries(list.map((p) => [p.role, p.previous])) : undefined;
	await db()
		.update(rolloutNodes)
		.set({
			state,
			error: end.error,
			updatedAt: new Date(),
			...(previous && state !== 'reverted' ? { previous } : {})
		})
		.where(and(eq(rolloutNodes.rolloutId, end.params.rollout_id), eq(rolloutNodes.nodeId, end.node.id)));
}

/** What a pull node's agent runs for a rollout: the release's version and the commits of the node's own roles. */
async function pullJob(ctx: StepContext<z.infer<typeof rolloutRevertParams>>): Promise<PullJob> {
	const [row] = await db()
		.select({ version: releases.version })
		.from(rollouts)
		.innerJoin(releases, eq(releases.id, rollouts.releaseId))
		.where(eq(rollouts.id, ctx.params.rollout_id));
	const all = ctx.params.node_targets?.[ctx.node.id] ?? ctx.params.targets;
	const targets = Object.fromEntries(Object.entries(all).filter(([role]) => ctx.node.roles.includes(role)));
	return { release: row?.version ?? 'unknown', targets };
}

const stageFlow = deployFlow('rollout-stage', (p) => rolloutStageParams.parse(p), {
	first: [windowStep],
	beforeRecord: [
		{
			name: 'bake',
			// The longest bake allowed, and room for its last probe.
			deadlineMs: 43_200_000 + 120_000,
			async do(ctx) {
				const total = ctx.params.bake_seconds;
				if (!total) return;
				const every = probeEverySeconds(total);
				ctx.log(`baking for ${total}s: health probed every ${every}s`);
				const started = Date.now();
				let probes = 0;
				for (;;) {
					const left = total * 1000 - (Date.now() - started);
					if (left <= 0) break;
					await sleep(Math.min(every * 1000, left), undefined, { signal: ctx.signal });
					const problems = await roleHealthProblems(ctx);
					probes++;
					if (problems.length) {
						const at = Math.round((Date.now() - started) / 1000);
						throw new StepFailed(`unhealthy during the bake, ${at}s in: ${problems.join('; ')}`);
					}
				}
				ctx.log(`healthy through the bake: ${probes} probe${probes === 1 ? '' : 's'} over ${total}s`);
			}
		}
	],
	finished: (end) => recordNode(end, end.state)
});
/** The bake is the agent's own health step on a pull node: the console cannot probe its roles. */
export const rolloutStageFlow = {
	...stageFlow,
	variant: pullVariant<RolloutStageParams>({
		kind: stageFlow.kind,
		first: [windowStep],
		job: pullJob,
		finished: stageFlow.finished
	})
};

export const rolloutRevertParams = codeSyncParams.extend({ rollout_id: z.uuid() });

/** A fleet rollback on one node: back to the commits it ran before the rollout (Code Sync's deploy). */
const revertFlow = deployFlow('rollout-revert', (p) => rolloutRevertParams.parse(p), {
	finished: (end) => recordNode(end, end.state === 'succeeded' ? 'reverted' : `revert_${end.state}`)
});
export const rolloutRevertFlow = {
	...revertFlow,
	variant: pullVariant({ kind: revertFlow.kind, job: pullJob, finished: revertFlow.finished })
};
