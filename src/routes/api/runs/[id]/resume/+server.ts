import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { resumeRun, getRun } from '$lib/server/engine';
import { apiHandler, validate } from '$lib/server/http/api';
import { presentRun } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const POST: RequestHandler = apiHandler(async (event) => {
	const run = await resumeRun(actorOf(event), validate(uuidSchema, event.params.id));
	return json(presentRun({ ...(await getRun(run.id)) }));
});
