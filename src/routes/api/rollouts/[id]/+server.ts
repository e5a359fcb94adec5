import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { apiHandler, validate } from '$lib/server/http/api';
import { getRelease } from '$lib/server/releases/releases';
import { presentRolloutDetail } from '$lib/server/rollouts/present';
import { getRollout, nodesOfRollout } from '$lib/server/rollouts/rollouts';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) => {
	const r = await getRollout(validate(uuidSchema, params.id));
	return json(await presentRolloutDetail(r, await getRelease(r.releaseId), await nodesOfRollout(r.id)));
});
