import { crlPathSchema } from '$lib/schemas/certificates';
import { publishedCrl } from '$lib/server/certs/crl';
import { notFound } from '$lib/server/errors';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/**
 * A CA's CRL (DER), for anyone: the URL in the CRL Distribution Point of the certificates it issued
 * (docs/certificates.md, "Revocation and the CRL"). HTTP caches may keep it until the next re-issue, never past
 * its nextUpdate, as RFC 5019 has OCSP responses served.
 */
export const GET: RequestHandler = apiHandler(async ({ params, request }) => {
	const { id } = validate(crlPathSchema, params);
	const now = new Date();
	const crl = await publishedCrl(id, now);
	if (!crl) throw notFound('CA with a CRL');
	// Weak: consoles sharing the database publish the same list under one number, but an EC signature differs.
	const etag = `W/"${crl.number}"`;
	const headers = {
		'content-type': 'application/pkix-crl',
		'cache-control': `public, no-transform, max-age=${Math.max(0, Math.floor((crl.reissueAt.getTime() - now.getTime()) / 1000))}`,
		'last-modified': crl.thisUpdate.toUTCString(),
		expires: crl.nextUpdate.toUTCString(),
		etag
	};
	const known = (request.headers.get('if-none-match') ?? '').split(',').map((t) => t.trim().replace(/^W\//, ''));
	if (known.includes(`"${crl.number}"`)) {
		return new Response(null, { status: 304, headers });
	}
	return new Response(new Uint8Array(crl.der), { headers });
});
