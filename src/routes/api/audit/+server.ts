import { json } from '@sveltejs/kit';
import { auditQuerySchema } from '$lib/schemas/audit';
import { auditPages, listAudit } from '$lib/server/audit';
import { apiHandler, readQuery } from '$lib/server/http/api';
import { presentAudit } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

const encoder = new TextEncoder();

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const q = readQuery(url, auditQuerySchema);
	if (q.format === 'ndjson') return exportNdjson(q);
	const page = await listAudit(q);
	return json({ items: page.items.map(presentAudit), next_cursor: page.nextCursor?.toString() ?? null });
});

/**
 * Every matching row, one JSON object a line, for SIEM ingestion. The stream pulls a page from the database
 * only when the client has taken the previous one, so the export's size never reaches the console's memory.
 */
function exportNdjson(q: Parameters<typeof auditPages>[0]): Response {
	const pages = auditPages(q);
	const body = new ReadableStream<Uint8Array>(
		{
			async pull(controller) {
				const next = await pages.next();
				if (next.done) controller.close();
				else controller.enqueue(encoder.encode(next.value.map((r) => JSON.stringify(presentAudit(r)) + '\n').join('')));
			},
			async cancel() {
				await pages.return(undefined);
			}
		},
		{ highWaterMark: 1 }
	);
	return new Response(body, {
		headers: { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' }
	});
}
