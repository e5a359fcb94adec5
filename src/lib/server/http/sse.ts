import { eventStreamHeadersSchema, eventStreamQuerySchema } from '$lib/schemas/runs';
import { eventStream } from '$lib/server/engine';
import { readQuery, validate } from './api';

/**
 * Answers an EventSource: resumes after `Last-Event-ID` (sent by the browser on reconnect) or `?after=`
 * (for a page that loaded a snapshot first). Without either, `fromStart` decides: the whole backlog, or only
 * what happens from now on. `?types=run.state,task.*` keeps only events of those types. Bad values are a 400
 * naming `after`, `types` or `Last-Event-ID`, parsed by the schemas the OpenAPI document describes them with.
 */
export function sseResponse(request: Request, url: URL, opts: { runId?: string; fromStart: boolean }): Response {
	const query = readQuery(url, eventStreamQuerySchema);
	const header = request.headers.get('last-event-id');
	const headers = validate(eventStreamHeadersSchema, header === null ? {} : { 'Last-Event-ID': header });
	const after = headers['Last-Event-ID'] ?? query.after ?? (opts.fromStart ? 0 : undefined);
	const types = query.types;
	return new Response(eventStream({ after, runId: opts.runId, types, signal: request.signal }), {
		headers: {
			'content-type': 'text/event-stream; charset=utf-8',
			'cache-control': 'no-cache, no-transform',
			// Proxies such as nginx buffer responses unless told not to; an event stream must flow.
			'x-accel-buffering': 'no'
		}
	});
}
