import { uuidSchema } from '$lib/schemas/common';
import { getRun, readRunLog } from '$lib/server/engine';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/**
 * The whole output of a run as plain text, one line per output line (`node step [err] text`), streamed as it is
 * read; the run page's "Download log" and scripts use it (docs/api.md).
 */
export const GET: RequestHandler = apiHandler(async ({ params }) => {
	const run = await getRun(validate(uuidSchema, params.id));
	const lines = readRunLog(run.id);
	const encoder = new TextEncoder();
	const body = new ReadableStream<Uint8Array>({
		async pull(controller) {
			const next = await lines.next();
			if (next.done) return controller.close();
			const l = next.value;
			const stream = l.stream === 'out' ? '' : ` [${l.stream}]`;
			controller.enqueue(encoder.encode(`${l.node} ${l.step ?? '-'}${stream} ${l.text}\n`));
		},
		async cancel() {
			await lines.return(undefined);
		}
	});
	return new Response(body, {
		headers: {
			'content-type': 'text/plain; charset=utf-8',
			'content-disposition': `attachment; filename="run-${run.number}.log"`
		}
	});
});
