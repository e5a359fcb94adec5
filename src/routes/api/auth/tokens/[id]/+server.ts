import { uuidSchema } from '$lib/schemas/common';
import { revokeApiToken } from '$lib/server/auth/api-tokens';
import { actorOf } from '$lib/server/audit';
import { notFound } from '$lib/server/errors';
import { apiHandler, principalOf, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const DELETE: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	if (!(await revokeApiToken(actorOf(event), principalOf(event).user.id, id))) throw notFound('Token');
	return new Response(null, { status: 204 });
});
