import { json } from '@sveltejs/kit';
import { z } from 'zod';
import { exportIssuedCsv, listIssued, presentIssued } from '$lib/server/certs/issued';
import { apiHandler, readQuery } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

const querySchema = z
	.object({ format: z.enum(['json', 'csv'], { error: 'must be json or csv' }).default('json') })
	.strict();

/** Every certificate the internal CA issued, as JSON or as a CSV download. */
export const GET: RequestHandler = apiHandler(async (event) => {
	const { format } = readQuery(event.url, querySchema);
	if (format === 'csv') {
		return new Response(await exportIssuedCsv(), {
			headers: {
				'content-type': 'text/csv; charset=utf-8',
				'content-disposition': 'attachment; filename="issued-certificates.csv"'
			}
		});
	}
	return json({ items: (await listIssued()).map(presentIssued) });
});
