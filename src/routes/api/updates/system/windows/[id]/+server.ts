import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { deleteWindow } from '$lib/server/sysupdates/windows';
import type { RequestHandler } from './$types';

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteWindow(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
