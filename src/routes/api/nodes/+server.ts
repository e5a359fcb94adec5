import { json } from '@sveltejs/kit';
import { createNodeSchema, nodeQuerySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { presentVersion, versionsFor } from '$lib/server/codesync/status';
import { createNode, listNodes } from '$lib/server/fleet/nodes';
import { alertsFor } from '$lib/server/fleet/status';
import { apiHandler, readJson, readQuery } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const page = await listNodes(readQuery(url, nodeQuerySchema));
	const [versions, alerts] = await Promise.all([versionsFor(page.items), alertsFor(page.items.map((n) => n.id))]);
	return json({
		items: page.items.map((n) => ({
			...presentNode(n),
			status: n.status,
			/** What domains raise besides the status: security_updates, reboot_required. */
			alerts: alerts.get(n.id) ?? [],
			versions: (versions.get(n.id) ?? []).map(presentVersion)
		})),
		next_cursor: page.nextCursor
	});
});

export const POST: RequestHandler = apiHandler(async (event) => {
	const node = await createNode(actorOf(event), await readJson(event.request, createNodeSchema));
	return json(presentNode(node), { status: 201 });
});
