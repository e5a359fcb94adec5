import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { checkNodeFor } from '$lib/server/fleet/checks';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Connects to the node now: reachability, host key, `uname -a`, latency. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const { result } = await checkNodeFor(actorOf(event), validate(uuidSchema, event.params.id));
	return json(result);
});
