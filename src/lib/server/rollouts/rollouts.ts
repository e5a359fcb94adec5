import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import type { CreateRolloutInput } from '$lib/schemas/releases';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db, type Database } from '$lib/server/db';
import {
	releases,
	rolloutNodes,
	rollouts,
	type Release,
	type Rollout,
	type RolloutNode,
	type RolloutStage,
	type RolloutState
} from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { assertAllowedVersion, getRelease } from '$lib/server/releases/releases';
import { previewStages } from './membership';
import { resolveTarget, type ResolvedTarget } from './targets';

/** Stage presets (docs/releases.md): a canary is 5 → 25 → 100 %, a staged rollout 10 → 50 → 100 %. */
export const PRESETS: Record<CreateRolloutInput['strategy'], number[]> = {
	immediate: [100],
	staged: [10, 50, 100],
	canary: [5, 25, 100]
};
/** Bake per stage when a preset's stages are used. */
export const DEFAULT_BAKE_SECONDS: Record<CreateRolloutInput['strategy'], number> = {
	immediate: 0,
	staged: 300,
	canary: 300
};

export const activeRolloutStates: RolloutState[] = [
	'scheduled',
	'running',
	'waiting_approval',
	'paused',
	'rolling_back'
];

function stagesOf(input: CreateRolloutInput): RolloutStage[] {
	if (!input.stages) {
		return PRESETS[input.strategy].map((percent) => ({
			percent,
			bakeSeconds: DEFAULT_BAKE_SECONDS[input.strategy],
			state: 'pending'
		}));
	}
	const stages = input.stages.map((s) => ({
		percent: s.percent,
		bakeSeconds: s.bake_seconds ?? Math.round((s.bake_minutes ?? 0) * 60),
		state: 'pending' as const
	}));
	for (let i = 1; i < stages.length; i++) {
		if (stages[i]!.percent <= stages[i - 1]!.percent) {
			throw new ServiceError('validation_failed', 'Stage percentages must grow from stage to stage', {
				[`stages.${i}.percent`]: `must be more than ${stages[i - 1]!.percent} (the stage before)`
			});
		}
	}
	if (stages.at(-1)!.percent !== 100) {
		throw new ServiceError('validation_failed', 'The last stage must reach 100% of the target', {
			[`stages.${stages.length - 1}.percent`]: 'must be 100 (the last stage takes every node left)'
		});
	}
	if (input.strategy === 'immediate' && stages.length !== 1) {
		throw new ServiceError('validation_failed', 'An immediate rollout has one stage', {
			stages: 'an immediate rollout has exactly one stage (100%)'
		});
	}
	return stages;
}

export interface RolloutPreview {
	/** The id the stages were computed with: create with it to get these stages. */
	id: string;
	stages: { percent: number; bake_seconds: number; nodes: { id: string; name: string }[] }[];
	excluded: { id: string; name: string; reason: string }[];
	roles: string[];
}

function preview(id: string, stages: RolloutStage[], target: ResolvedTarget): RolloutPreview {
	const nameOf = new Map(target.nodes.map((n) => [n.id, n.name]));
	const members = previewStages(
		id,
		stages.map((s) => s.percent),
		target.nodes.map((n) => n.id)
	);
	return {
		id,
		stages: stages.map((s, k) => ({
			percent: s.percent,
			bake_seconds: s.bakeSeconds,
			nodes: members[k]!.map((nid) => ({ id: nid, name: nameOf.get(nid)! }))
		})),
		excluded: target.excluded,
		roles: target.roles
	};
}

async function activeOverlap(exec: Database, nodeIds: string[]): Promise<{ rollout: Rollout; nodes: string[] } | null> {
	const active = await exec
		.select({ rollout: rollouts, channel: releases.channel })
		.from(rollouts)
		.innerJoin(releases, eq(releases.id, rollouts.releaseId))
		.where(inArray(rollouts.state, activeRolloutStates))
		.orderBy(asc(rollouts.number));
	const wanted = new Set(nodeIds);
	for (const { rollout: r, channel } of active) {
		const theirs = new Set((await resolveTarget(r.target, { id: r.releaseId, channel }, exec)).nodes.map((n) => n.id));
		const assigned = await exec
			.select({ nodeId: rolloutNodes.nodeId, name: rolloutNodes.nodeName })
			.from(rolloutNodes)
			.where(eq(rolloutNodes.rolloutId, r.id));
		for (const a of assigned) theirs.add(a.nodeId);
		const shared = [...theirs].filter((id) => wanted.has(id));
		if (shared.length) return { rollout: r, nodes: shared };
	}
	return null;
}

/**
 * `POST /api/rollouts`: checks the release (rollback protection), the stages and the target, refuses a target
 * that overlaps another active rollout (409), and creates the rollout; the driver starts it (at `start_at`).
 * With `dry_run`, only the preview: which nodes fall in which stage.
 */
export async function createRollout(
	actor: Actor,
	input: CreateRolloutInput
): Promise<{ rollout: Rollout | null; preview: RolloutPreview }> {
	const release = await getRelease(input.release_id).catch((err: unknown) => {
		if (err instanceof ServiceError && err.code === 'not_found') {
			throw new ServiceError('validation_failed', 'No such release', { release_id: 'no release with this id' });
		}
		throw err;
	});
	assertAllowedVersion(release.version, 'release_id');
	const stages = stagesOf(input);
	const target = await resolveTarget(input.target, release);
	const id = input.id ?? crypto.randomUUID();
	const shown = preview(id, stages, target);
	if (input.dry_run) return { rollout: null, preview: shown };
	const [taken] = await db().select({ id: rollouts.id }).from(rollouts).where(eq(rollouts.id, id));
	if (taken) throw conflict('A rollout with this id exists', { id: 'already used: preview again for a new id' });
	if (!target.nodes.length) {
		throw new ServiceError('validation_failed', 'The target selects no node', {
			target: `no node on channel ${input.target.channel ?? release.channel} matches (with a pinned host key and a role the release deploys to)`
		});
	}
	const rollout = await db().transaction(async (tx) => {
		// One creation at a time: two overlapping rollouts created at once cannot both pass the check.
		await tx.execute(sql`select pg_advisory_xact_lock(hashtext('flotilla:rollouts:create'))`);
		const overlap = await activeOverlap(
			tx,
			target.nodes.map((n) => n.id)
		);
		if (overlap) {
			const names = target.nodes.filter((n) => overlap.nodes.includes(n.id)).map((n) => n.name);
			throw conflict(
				`Rollout #${overlap.rollout.number} is still active on ${names.length} of these nodes (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''})`,
				{ target: `overlaps rollout #${overlap.rollout.number} (${overlap.rollout.state})` }
			);
		}
		const startAt = input.start_at ? new Date(input.start_at) : null;
		const [row] = await tx
			.insert(rollouts)
			.values({
				id,
				releaseId: release.id,
				target: input.target,
				strategy: input.strategy,
				stages,
				failureThresholdPercent: input.failure_threshold_percent,
				minFinishedNodes: input.min_finished_nodes,
				concurrency: input.concurrency,
				requireApproval: input.require_approval,
				respectWindows: input.respect_windows,
				startAt,
				state: startAt && startAt > new Date() ? 'scheduled' : 'running',
				createdBy: actor.name
			})
			.returning();
		await recordAudit(
			actor,
			{
				action: 'rollout.create',
				targetType: 'rollout',
				targetId: id,
				details: {
					release: release.version,
					strategy: input.strategy,
					stages: stages.map((s) => s.percent),
					nodes: target.nodes.length
				}
			},
			tx
		);
		return row!;
	});
	await recordEvent({
		type: 'rollout.created',
		data: { rollout_id: rollout.id, number: rollout.number, release: release.version, state: rollout.state }
	});
	return { rollout, preview: shown };
}

export async function listRollouts(q: { limit: number; cursor?: number; state?: RolloutState }) {
	const rows = await db()
		.select()
		.from(rollouts)
		.where(and(q.cursor ? lt(rollouts.number, q.cursor) : undefined, q.state ? eq(rollouts.state, q.state) : undefined))
		.orderBy(desc(rollouts.number))
		.limit(q.limit + 1);
	return { items: rows.slice(0, q.limit), nextCursor: rows.length > q.limit ? rows[q.limit - 1]!.number : null };
}

export async function getRollout(id: string): Promise<Rollout> {
	const [row] = await db().select().from(rollouts).where(eq(rollouts.id, id));
	if (!row) throw notFound('Rollout');
	return row;
}

export async function nodesOfRollout(id: string): Promise<RolloutNode[]> {
	return db()
		.select()
		.from(rolloutNodes)
		.where(eq(rolloutNodes.rolloutId, id))
		.orderBy(asc(rolloutNodes.stage), asc(rolloutNodes.nodeName));
}

/** Which nodes the rollout's next stages would take now (the detail page's preview of what is left). */
export async function previewRollout(r: Rollout, release: Release): Promise<RolloutPreview> {
	return preview(r.id, r.stages, await resolveTarget(r.target, release));
}

/** The active rollouts a node takes part in (assigned to a stage): the node page says a rollout is moving it. */
export async function activeRolloutsOfNode(nodeId: string) {
	return db()
		.select({
			id: rollouts.id,
			number: rollouts.number,
			state: rollouts.state,
			stage: rolloutNodes.stage,
			nodeState: rolloutNodes.state,
			version: releases.version
		})
		.from(rolloutNodes)
		.innerJoin(rollouts, eq(rollouts.id, rolloutNodes.rolloutId))
		.innerJoin(releases, eq(releases.id, rollouts.releaseId))
		.where(and(eq(rolloutNodes.nodeId, nodeId), inArray(rollouts.state, activeRolloutStates)))
		.orderBy(desc(rollouts.number));
}
