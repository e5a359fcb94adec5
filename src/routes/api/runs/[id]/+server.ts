import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { getRun } from '$lib/server/engine';
import { apiHandler, validate } from '$lib/server/http/api';
import { presentRun, presentTask } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) => {
	const run = await getRun(validate(uuidSchema, params.id));
	return json({ ...presentRun(run), tasks: run.tasks.map(presentTask) });
});
