import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { getRelease } from '$lib/server/releases/releases';
import { advanceRollout } from '$lib/server/rollouts/driver';
import { presentRollout } from '$lib/server/rollouts/present';
import type { RequestHandler } from './$types';

export const POST: RequestHandler = apiHandler(async (event) => {
	const r = await advanceRollout(actorOf(event), validate(uuidSchema, event.params.id));
	return json(presentRollout(r, await getRelease(r.releaseId)));
});
