import { nodesRunningCommit } from '$lib/server/codesync/versions';
import type { Release } from '$lib/server/db/schema';

/** Which nodes run a release: those whose recorded commit for some role is the release's. */
export async function nodesOnRelease(release: Release) {
	const rows = await nodesRunningCommit(release.sha);
	return rows.map((r) => ({
		node_id: r.nodeId,
		node: r.nodeName,
		role: r.role,
		commit: r.commit,
		synced_at: r.syncedAt?.toISOString() ?? null
	}));
}
