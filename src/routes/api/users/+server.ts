import { json } from '@sveltejs/kit';
import { createUserSchema } from '$lib/schemas/auth';
import { createUser, listUsers } from '$lib/server/auth/users';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { presentUser } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => {
	const users = await listUsers();
	return json({ items: users.map(presentUser), next_cursor: null });
});

export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, createUserSchema);
	const user = await createUser(actorOf(event), input);
	return json(presentUser(user), { status: 201 });
});
