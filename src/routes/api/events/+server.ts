import { apiHandler } from '$lib/server/http/api';
import { sseResponse } from '$lib/server/http/sse';
import type { RequestHandler } from './$types';

/** Every engine event, fleet-wide, live (resumable with Last-Event-ID); `?types=run.state,task.*` keeps only those. */
export const GET: RequestHandler = apiHandler(async ({ request, url }) =>
	sseResponse(request, url, { fromStart: false })
);
