import { currentCrl } from '$lib/server/certs/issued';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The internal CA's CRL (PEM), made fresh on each request. */
export const GET: RequestHandler = apiHandler(
	async () => new Response(await currentCrl(), { headers: { 'content-type': 'application/pkix-crl; charset=utf-8' } })
);
