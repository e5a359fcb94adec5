import { error, redirect } from '@sveltejs/kit';
import { nodeQuerySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { listRoles } from '$lib/server/codesync/roles';
import { versionsFor } from '$lib/server/codesync/status';
import { alertsFor, countByStatus, notesFor } from '$lib/server/fleet/status';
import { checkAllNodes } from '$lib/server/fleet/check-flow';
import { connectionStatus, listNodes, rolesOnNodes } from '$lib/server/fleet/nodes';
import { principalOf } from '$lib/server/http/api';
import { releasesOfNodes } from '$lib/server/rollouts/fleet';
import { ServiceError } from '$lib/server/errors';
import { formError } from '$lib/server/http/forms';
import { planAction, updateAction } from '$lib/server/codesync/update-forms';
import type { Actions, PageServerLoad } from './$types';

/** Rows per page: the table pages by name in the database, so a fleet of 10,000 loads as fast as one of 100. */
const PAGE_SIZE = 100;

async function listPage(filters: Parameters<typeof listNodes>[0]) {
	try {
		return await listNodes({ ...filters, limit: PAGE_SIZE });
	} catch (err) {
		// A cursor of another sort (an edited or stale URL) is the visitor's mistake, not the console's.
		if (err instanceof ServiceError) error(400, err.message);
		throw err;
	}
}

export const load: PageServerLoad = async (event) => {
	// The live stream reloads exactly this data (and not the layout) when nodes change.
	event.depends('app:fleet');
	const { url } = event;
	const parsed = nodeQuerySchema.safeParse({
		q: url.searchParams.get('q') || undefined,
		status: url.searchParams.get('status') || undefined,
		role: url.searchParams.get('role') || undefined,
		label: url.searchParams.get('label') || undefined,
		connection: url.searchParams.get('connection') || undefined,
		sort: url.searchParams.get('sort') || undefined,
		cursor: url.searchParams.get('cursor') || undefined,
		limit: PAGE_SIZE
	});
	if (!parsed.success) error(400, `Unknown filter: ${parsed.error.issues.map((i) => i.path.join('.')).join(', ')}`);
	const filters = parsed.data;
	const [page, counts, roles, nodeRoles] = await Promise.all([
		listPage(filters),
		countByStatus(),
		listRoles(),
		// Roles named on nodes but not (yet) defined are still worth filtering by.
		rolesOnNodes()
	]);
	const ids = page.items.map((n) => n.id);
	const [versions, alerts, notes] = await Promise.all([versionsFor(page.items), alertsFor(ids), notesFor(ids)]);
	const releaseOf = await releasesOfNodes(versions);
	const principal = principalOf(event);
	return {
		nodes: page.items.map((n) => ({
			id: n.id,
			name: n.name,
			address: `${n.host}:${n.port}`,
			kind: n.kind,
			labels: n.labels,
			controlPlane: n.controlPlane,
			status: n.status,
			// What domains raise beside the status (security updates pending, a reboot required).
			alerts: alerts.get(n.id) ?? [],
			connection: connectionStatus(n),
			/** How the console hears from a node it does not reach over SSH (a pull agent's last poll). */
			notes: notes.get(n.id) ?? [],
			lastSeenAt: n.lastSeenAt,
			latencyMs: n.latencyMs,
			lastError: n.lastError,
			versions: versions.get(n.id) ?? [],
			release: releaseOf.get(n.id) ?? { releases: [], rollout: null }
		})),
		counts,
		total: Object.values(counts).reduce((a, b) => a + b, 0),
		roles: [...new Set([...roles.map((r) => r.name), ...nodeRoles])].sort(),
		filters: {
			q: filters.q ?? '',
			status: filters.status ?? '',
			role: filters.role ?? '',
			label: filters.label ?? '',
			connection: filters.connection ?? ''
		},
		sort: filters.sort ?? 'name',
		cursor: filters.cursor ?? null,
		nextCursor: page.nextCursor,
		pageSize: PAGE_SIZE,
		canCheckAll: authorize(event.route.id, 'POST', '?/checkAll', principal).allow,
		canUpdate: authorize(event.route.id, 'POST', '?/update', principal).allow
	};
};

export const actions: Actions = {
	/** A check run on every node whose host key is pinned: the others cannot be connected to safely yet. */
	checkAll: async (event) => {
		let run;
		try {
			run = await checkAllNodes(actorOf(event));
		} catch (err) {
			return formError(err);
		}
		redirect(303, `/runs/${run.id}`);
	},
	/**
	 * Update All (an empty scope: the whole fleet) or Update selected (the checked nodes): the plan first, a dry
	 * run over the scope the button posts…
	 */
	plan: (event) => planAction(event),
	/** …then the run the operator confirmed, over the scope of that plan. */
	update: (event) => updateAction(event)
};
