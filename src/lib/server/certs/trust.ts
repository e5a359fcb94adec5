import { X509Certificate } from 'node:crypto';
import { db } from '$lib/server/db';
import { certAuthorities } from '$lib/server/db/schema';

/** The CAs chains are verified against: the internal CA and every CA an admin imported as trusted. */
export async function trustedAuthorities(): Promise<X509Certificate[]> {
	const rows = await db().select({ pem: certAuthorities.certPem }).from(certAuthorities);
	return rows.map((r) => new X509Certificate(r.pem));
}
