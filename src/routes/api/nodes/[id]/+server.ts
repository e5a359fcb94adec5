import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { updateNodeSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { deleteNode, getNode, updateNode } from '$lib/server/fleet/nodes';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) =>
	json(presentNode(await getNode(validate(uuidSchema, params.id))))
);

export const PATCH: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const changes = await readJson(event.request, updateNodeSchema);
	return json(presentNode(await updateNode(actorOf(event), id, changes)));
});

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteNode(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
