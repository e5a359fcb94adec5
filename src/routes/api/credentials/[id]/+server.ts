import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { deleteCredential } from '$lib/server/keys/credentials';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteCredential(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
