import { json } from '@sveltejs/kit';
import { createNodeSchema, nodeQuerySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { createNode, listNodes } from '$lib/server/fleet/nodes';
import { apiHandler, readJson, readQuery } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const page = await listNodes(readQuery(url, nodeQuerySchema));
	return json({ items: page.items.map(presentNode), next_cursor: page.nextCursor });
});

export const POST: RequestHandler = apiHandler(async (event) => {
	const node = await createNode(actorOf(event), await readJson(event.request, createNodeSchema));
	return json(presentNode(node), { status: 201 });
});
