import { json } from '@sveltejs/kit';
import { updateRoleSchema } from '$lib/schemas/code-sync';
import { roleNameSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { deleteRole, getRole, presentRole, updateRole } from '$lib/server/codesync/roles';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) =>
	json(presentRole(await getRole(validate(roleNameSchema, params.name))))
);

export const PATCH: RequestHandler = apiHandler(async (event) => {
	const name = validate(roleNameSchema, event.params.name);
	const changes = await readJson(event.request, updateRoleSchema);
	return json(presentRole(await updateRole(actorOf(event), name, changes)));
});

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteRole(actorOf(event), validate(roleNameSchema, event.params.name));
	return new Response(null, { status: 204 });
});
