import { json } from '@sveltejs/kit';
import { issuedQuerySchema } from '$lib/schemas/certificates';
import { exportIssuedCsv, listIssued, presentIssued } from '$lib/server/certs/issued';
import { apiHandler, readQuery } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Every certificate the internal CA issued, as JSON or as a CSV download. */
export const GET: RequestHandler = apiHandler(async (event) => {
	const { format } = readQuery(event.url, issuedQuerySchema);
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
