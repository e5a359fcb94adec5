import { json } from '@sveltejs/kit';
import { createTokenSchema } from '$lib/schemas/auth';
import { createApiToken, listApiTokens } from '$lib/server/auth/api-tokens';
import { actorOf } from '$lib/server/audit';
import { apiHandler, principalOf, readJson } from '$lib/server/http/api';
import { presentToken } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async (event) => {
	const tokens = await listApiTokens(principalOf(event).user.id);
	return json({ items: tokens.map(presentToken), next_cursor: null });
});

export const POST: RequestHandler = apiHandler(async (event) => {
	const { user } = principalOf(event);
	const input = await readJson(event.request, createTokenSchema);
	const { token, record } = await createApiToken(actorOf(event), user, {
		name: input.name,
		scopes: input.scopes,
		expiresInDays: input.expires_in_days
	});
	// The only time the token itself leaves the console.
	return json({ ...presentToken(record), token }, { status: 201 });
});
