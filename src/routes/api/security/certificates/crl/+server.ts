import { currentCrlPem } from '$lib/server/certs/crl';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The internal CA's current CRL (PEM); the same list `GET /crl/{id}.crl` publishes to anyone. */
export const GET: RequestHandler = apiHandler(
	async () =>
		new Response(await currentCrlPem(), { headers: { 'content-type': 'application/pkix-crl; charset=utf-8' } })
);
