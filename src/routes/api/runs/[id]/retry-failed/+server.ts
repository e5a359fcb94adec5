import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { retryFailed } from '$lib/server/engine';
import { apiHandler, validate } from '$lib/server/http/api';

import type { RequestHandler } from './$types';

export const POST: RequestHandler = apiHandler(async (event) => {
	const run = await retryFailed(actorOf(event), validate(uuidSchema, event.params.id));
	return json({ run_id: run.id, number: run.number }, { status: 202 });
});
