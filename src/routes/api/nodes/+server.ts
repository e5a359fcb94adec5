import { json } from '@sveltejs/kit';
import { createNodeSchema, nodeQuerySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { presentVersion, versionsFor } from '$lib/server/codesync/status';
import { createNode, listNodes } from '$lib/server/fleet/nodes';
import { apiHandler, readJson, readQuery } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const page = await listNodes(readQuery(url, nodeQuerySchema));
	const versions = await versionsFor(page.items);
	return json({
		items: page.items.map((n) => ({
			...presentNode(n),
			status: n.status,
			versions: (versions.get(n.id) ?? []).map(presentVersion)
		})),
		next_cursor: page.nextCursor
	});
});

export const POST: RequestHandler = apiHandler(async (event) => {
	const node = await createNode(actorOf(event), await readJson(event.request, createNodeSchema));
	return json(presentNode(node), { status: 201 });
});
