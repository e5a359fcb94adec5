import { json } from '@sveltejs/kit';
import { reportSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { MAX_REPORT_BYTES, reportCertificates } from '$lib/server/certs/report';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A node's own certificates, as PEM (docs/certificates.md, "Reports"). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, reportSchema, { maxBytes: MAX_REPORT_BYTES });
	return json(await reportCertificates(actorOf(event), input), { status: 201 });
});
