import { json } from '@sveltejs/kit';
import { updateUserSchema } from '$lib/schemas/auth';
import { uuidSchema } from '$lib/schemas/common';
import { getUser, updateUser } from '$lib/server/auth/users';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { presentUser } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) =>
	json(presentUser(await getUser(validate(uuidSchema, params.id))))
);

export const PATCH: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const changes = await readJson(event.request, updateUserSchema);
	const user = await updateUser(actorOf(event), id, changes);
	return json(presentUser(user));
});
