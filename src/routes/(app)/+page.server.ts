import { connectionStatus, listNodes } from '$lib/server/fleet/nodes';
import type { PageServerLoad } from './$types';

// Until Code Sync tracks deployed commits, what the overview can say truthfully about each node is whether
// the console can reach it: that is what it shows.
export const load: PageServerLoad = async () => {
	const page = await listNodes({ limit: 500 });
	const rows = page.items.map((n) => ({
		id: n.id,
		name: n.name,
		address: `${n.host}:${n.port}`,
		kind: n.kind,
		roles: n.roles,
		labels: n.labels,
		controlPlane: n.controlPlane,
		connection: connectionStatus(n),
		lastSeenAt: n.lastSeenAt,
		latencyMs: n.latencyMs
	}));
	const counts: Record<string, number> = {};
	for (const r of rows) counts[r.connection] = (counts[r.connection] ?? 0) + 1;
	return { nodes: rows, counts, more: page.nextCursor !== null };
};
