import { and, desc, eq, inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { releases, rolloutNodes, rollouts } from '$lib/server/db/schema';
import { releasesForCommits } from '$lib/server/releases/releases';
import { activeRolloutStates } from './rollouts';

/** A node's release on the Fleet Overview: which release(s) its roles run, and the rollout moving it now. */
export interface NodeRelease {
	releases: { id: string; version: string }[];
	rollout: { id: string; number: number; version: string; stage: number } | null;
}

/**
 * For one page of nodes (docs/releases.md, "Pages"): the releases their recorded commits are, and the active
 * rollout that has the node in a started stage it has not finished yet.
 */
export async function releasesOfNodes(
	versions: Map<string, { commit: string | null }[]>
): Promise<Map<string, NodeRelease>> {
	const ids = [...versions.keys()];
	const commits = [...new Set([...versions.values()].flat().flatMap((v) => (v.commit ? [v.commit] : [])))];
	const [releaseOf, moving] = await Promise.all([
		releasesForCommits(commits),
		ids.length
			? db()
					.select({
						nodeId: rolloutNodes.nodeId,
						id: rollouts.id,
						number: rollouts.number,
						stage: rolloutNodes.stage,
						version: releases.version
					})
					.from(rolloutNodes)
					.innerJoin(rollouts, eq(rollouts.id, rolloutNodes.rolloutId))
					.innerJoin(releases, eq(releases.id, rollouts.releaseId))
					.where(
						and(
							inArray(rolloutNodes.nodeId, ids),
							eq(rolloutNodes.state, 'pending'),
							inArray(rollouts.state, activeRolloutStates)
						)
					)
					.orderBy(desc(rollouts.number))
			: Promise.resolve([])
	]);
	const out = new Map<string, NodeRelease>();
	for (const [nodeId, list] of versions) {
		const found = new Map<string, string>();
		for (const v of list) {
			const rel = v.commit ? releaseOf.get(v.commit) : undefined;
			if (rel) found.set(rel.id, rel.version);
		}
		const m = moving.find((r) => r.nodeId === nodeId);
		out.set(nodeId, {
			releases: [...found].map(([id, version]) => ({ id, version })),
			rollout: m ? { id: m.id, number: m.number, version: m.version, stage: m.stage } : null
		});
	}
	return out;
}
