import { json } from '@sveltejs/kit';
import { createRoleSchema } from '$lib/schemas/code-sync';
import { actorOf } from '$lib/server/audit';
import { createRole, listRoles, presentRole } from '$lib/server/codesync/roles';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => json({ items: (await listRoles()).map(presentRole) }));

export const POST: RequestHandler = apiHandler(async (event) => {
	const role = await createRole(actorOf(event), await readJson(event.request, createRoleSchema));
	return json(presentRole(role), { status: 201 });
});
