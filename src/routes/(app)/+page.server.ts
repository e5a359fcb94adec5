import { redirect } from '@sveltejs/kit';
import { eq } from 'drizzle-orm';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { db } from '$lib/server/db';
import { nodes } from '$lib/server/db/schema';
import { createRun } from '$lib/server/engine/runs';
import { connectionStatus, listNodes } from '$lib/server/fleet/nodes';
import { principalOf } from '$lib/server/http/api';
import { failWith, formError } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

// Until Code Sync tracks deployed commits, what the overview can say truthfully about each node is whether
// the console can reach it: that is what it shows.
export const load: PageServerLoad = async (event) => {
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
	return {
		nodes: rows,
		counts,
		more: page.nextCursor !== null,
		canCheckAll: authorize(event.route.id, 'POST', '?/checkAll', principalOf(event)).allow
	};
};

export const actions: Actions = {
	/** A check run on every node whose host key is pinned: the others cannot be connected to safely yet. */
	checkAll: async (event) => {
		const pinned = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.hostKeyStatus, 'pinned'));
		if (!pinned.length) {
			return failWith(409, 'No node has a pinned host key yet: test and accept a node in Settings → Nodes first.');
		}
		let run;
		try {
			run = await createRun(actorOf(event), {
				kind: 'check',
				title: 'Check all nodes',
				nodeIds: pinned.map((n) => n.id)
			});
		} catch (err) {
			return formError(err);
		}
		redirect(303, `/runs/${run.id}`);
	}
};
