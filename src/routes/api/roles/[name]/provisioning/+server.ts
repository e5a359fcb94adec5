import { json } from '@sveltejs/kit';
import { roleNameSchema } from '$lib/schemas/nodes';
import { provisioningDefinitionSchema } from '$lib/schemas/provisioning';
import { actorOf } from '$lib/server/audit';
import { getRole } from '$lib/server/codesync/roles';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { findDefinition, presentDefinition, saveDefinition } from '$lib/server/provisioning/definitions';
import type { RequestHandler } from './$types';

/** What provisioning needs for a role; secrets by name only, never their values. */
export const GET: RequestHandler = apiHandler(async ({ params }) => {
	const role = await getRole(validate(roleNameSchema, params.name));
	return json(presentDefinition(await findDefinition(role.name), role.name));
});

export const PUT: RequestHandler = apiHandler(async (event) => {
	const name = validate(roleNameSchema, event.params.name);
	const input = await readJson(event.request, provisioningDefinitionSchema, { maxBytes: 512 * 1024 });
	return json(presentDefinition(await saveDefinition(actorOf(event), name, input), name));
});
