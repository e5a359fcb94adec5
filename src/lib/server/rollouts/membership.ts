import { createHash } from 'node:crypto';

/*
 * Stage membership (docs/releases.md, "Stages"): nodes are ordered by the SHA-256 of `<rollout id>:<node id>`, and
 * stage k takes, in that order, the nodes not in an earlier stage until the stages so far hold ceil(percent_k % of
 * the target); the last stage takes everyone left. The same rollout and fleet always give the same stages; the
 * order is a different shuffle for every rollout, so the same nodes are not always the canaries. A node that joins
 * the target while the rollout runs is simply unassigned when the next stage starts: it lands in that stage or a
 * later one, never in one that already ran.
 */

export function rankOf(rolloutId: string, nodeId: string): string {
	return createHash('sha256').update(`${rolloutId}:${nodeId}`).digest('hex');
}

function ordered(rolloutId: string, nodeIds: string[]): string[] {
	return nodeIds
		.map((id) => ({ id, rank: rankOf(rolloutId, id) }))
		.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
		.map((n) => n.id);
}

/**
 * The nodes that join stage `stage` when it starts: `targetIds` is the target as it is now, `assigned` the stage
 * of every node already in an earlier stage.
 */
export function membersOfStage(
	rolloutId: string,
	percents: number[],
	stage: number,
	targetIds: string[],
	assigned: ReadonlyMap<string, number>
): string[] {
	const free = ordered(
		rolloutId,
		targetIds.filter((id) => !assigned.has(id))
	);
	if (stage >= percents.length - 1) return free;
	const already = targetIds.filter((id) => assigned.has(id)).length;
	const wanted = Math.ceil((percents[stage]! * targetIds.length) / 100);
	return free.slice(0, Math.max(0, wanted - already));
}

/** Every stage's members, as the rollout would start them on this target (the create form's preview). */
export function previewStages(rolloutId: string, percents: number[], targetIds: string[]): string[][] {
	const assigned = new Map<string, number>();
	return percents.map((_, k) => {
		const members = membersOfStage(rolloutId, percents, k, targetIds, assigned);
		for (const id of members) assigned.set(id, k);
		return members;
	});
}
