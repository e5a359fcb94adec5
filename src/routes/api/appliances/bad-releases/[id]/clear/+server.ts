import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { clearBadRelease, presentBadRelease } from '$lib/server/appliances/fallbacks';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The release may be offered to that hardware again. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const mark = await clearBadRelease(actorOf(event), validate(uuidSchema, event.params.id));
	return json(presentBadRelease(mark));
});
