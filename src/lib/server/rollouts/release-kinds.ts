import { db, type Database } from '$lib/server/db';
import type { Release, Rollout } from '$lib/server/db/schema';

/**
 * Releases that are not a commit to deploy (an appliance image) are rolled out by their own flow, with the
 * same stages, thresholds and controls. Their domain registers here what a stage runs and which nodes it
 * targets, so that rollouts stay free of any other domain (the arrow points from that domain to this one).
 */
export interface ReleaseKind {
	name: string;
	/** Whether a release is of this kind (looked at once per decision, so it may read the database). */
	claims(release: Pick<Release, 'id'>, exec: Database): Promise<boolean>;
	/** The node kind the release is for: targets select only such nodes, whatever roles they have. */
	nodeKind: 'appliance' | 'server';
	/**
	 * Whether the stage's bake is a delay after the stage ended rather than a re-probe inside each node's task
	 * (the kind's flow has no bake of its own): the next stage waits for it.
	 */
	bakesBetweenStages: boolean;
	/** The run one stage starts on its nodes. */
	stageRun(
		release: Release,
		rollout: Rollout,
		stage: number
	): Promise<{ kind: string; params: Record<string, unknown> }>;
	/** The run of a fleet rollback on the nodes the rollout changed (each back to what it ran before). */
	revertRun(rollout: Rollout, nodeIds: string[]): Promise<{ kind: string; params: Record<string, unknown> }>;
}

const kinds: ReleaseKind[] = [];

export function registerReleaseKind(kind: ReleaseKind): void {
	const at = kinds.findIndex((k) => k.name === kind.name);
	if (at >= 0) kinds.splice(at, 1, kind);
	else kinds.push(kind);
}

/** The kind that claims the release, or null for a plain release (a commit Code Sync deploys). */
export async function releaseKindOf(release: Pick<Release, 'id'>, exec: Database = db()): Promise<ReleaseKind | null> {
	for (const k of kinds) if (await k.claims(release, exec)) return k;
	return null;
}
