import { z } from 'zod';
import { eventTypesSchema } from '$lib/schemas/events';
import { lastEventIdSchema } from '$lib/schemas/runs';
import { eventStream } from '$lib/server/engine';
import { validate } from './api';

/**
 * Answers an EventSource: resumes after `Last-Event-ID` (sent by the browser on reconnect) or `?after=`
 * (for a page that loaded a snapshot first). Without either, `fromStart` decides: the whole backlog, or only
 * what happens from now on. `?types=run.state,task.*` keeps only events of those types.
 */
const typesQuerySchema = z.object({ types: eventTypesSchema });

export function sseResponse(request: Request, url: URL, opts: { runId?: string; fromStart: boolean }): Response {
	const raw = request.headers.get('last-event-id') ?? url.searchParams.get('after');
	const after = raw !== null ? validate(lastEventIdSchema, raw) : opts.fromStart ? 0 : undefined;
	const rawTypes = url.searchParams.get('types');
	const types = rawTypes !== null ? validate(typesQuerySchema, { types: rawTypes }).types : undefined;
	return new Response(eventStream({ after, runId: opts.runId, types, signal: request.signal }), {
		headers: {
			'content-type': 'text/event-stream; charset=utf-8',
			'cache-control': 'no-cache, no-transform',
			// Proxies such as nginx buffer responses unless told not to; an event stream must flow.
			'x-accel-buffering': 'no'
		}
	});
}
