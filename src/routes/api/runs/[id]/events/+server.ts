import { uuidSchema } from '$lib/schemas/common';
import { getRun } from '$lib/server/engine';
import { apiHandler, validate } from '$lib/server/http/api';
import { sseResponse } from '$lib/server/http/sse';
import type { RequestHandler } from './$types';

/** One run's events from its start (or after Last-Event-ID), then live. */
export const GET: RequestHandler = apiHandler(async ({ request, url, params }) => {
	const run = await getRun(validate(uuidSchema, params.id));
	return sseResponse(request, url, { runId: run.id, fromStart: true });
});
