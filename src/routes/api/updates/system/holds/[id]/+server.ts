import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { deleteHold } from '$lib/server/sysupdates/holds';
import type { RequestHandler } from './$types';

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteHold(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
