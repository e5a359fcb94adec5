import { and, eq, isNotNull } from 'drizzle-orm';
import { config } from '$lib/server/config';
import { db } from '$lib/server/db';
import { certAuthorities, issuedCertificates } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { caWithKey, issuingCa } from './authority';
import { pem } from './der';
import { createCrl } from './issue';

/**
 * The published CRL of a CA the console holds the key of (docs/certificates.md, "Revocation and the CRL"):
 * what `GET /crl/<ca id>.crl` serves to anyone and what issued certificates name as their CRL Distribution Point.
 *
 * A CRL is signed when asked for, never stored: its contents follow from the database and the hour, so every
 * console sharing the database publishes the same list under the same number, a revocation is in the next one
 * fetched, and no job has to re-sign it before its nextUpdate (one fetched is always a fresh one).
 */

/** How long a CRL is valid: relying parties that cached one keep trusting it until then. */
export const CRL_VALID_DAYS = 7;
/** A CRL is re-issued at each hour, or at once when a certificate is revoked. */
const REISSUE_MS = 3_600_000;

export interface PublishedCrl {
	der: Buffer;
	/** The CRL Number: grows with every new CRL. */
	number: bigint;
	thisUpdate: Date;
	nextUpdate: Date;
	/** When the next CRL is issued even without a revocation: how long an HTTP cache may keep this one. */
	reissueAt: Date;
}

/** The CRL's URL that issued certificates carry; null when the console's ORIGIN is not configured. */
export function crlUrl(caId: string, origin = config().publicOrigin): string | null {
	return origin ? `${origin}/crl/${caId}.crl` : null;
}

/** The last CRL signed per CA, so that fetches between re-issues do not unseal the key and sign again. */
const signedCrls = new Map<string, PublishedCrl>();

/** The CA's current CRL; null when the console holds no key for that CA (unknown, or only trusted). */
export async function publishedCrl(caId: string, now = new Date()): Promise<PublishedCrl | null> {
	const [known] = await db()
		.select({ id: certAuthorities.id })
		.from(certAuthorities)
		.where(and(eq(certAuthorities.id, caId), isNotNull(certAuthorities.sealedKey)));
	if (!known) return null;
	const revoked = await db()
		.select({ serial: issuedCertificates.serial, revokedAt: issuedCertificates.revokedAt })
		.from(issuedCertificates)
		.where(and(eq(issuedCertificates.caId, caId), isNotNull(issuedCertificates.revokedAt)))
		.orderBy(issuedCertificates.revokedAt, issuedCertificates.serial);

	// thisUpdate is the start of the hour or the latest revocation after it (never in the future), so it never
	// goes back. The number adds how many are revoked, as revocations only ever add: a console whose clock runs
	// behind may record one dated before the last CRL, and that list must still get a number of its own.
	const period = Math.floor(now.getTime() / REISSUE_MS) * REISSUE_MS;
	const latest = revoked.reduce((max, r) => Math.max(max, r.revokedAt!.getTime()), 0);
	const thisUpdateSeconds = Math.floor(Math.min(Math.max(period, latest), now.getTime()) / 1000);
	const number = BigInt(thisUpdateSeconds) * 1_000_000n + BigInt(revoked.length);

	const cached = signedCrls.get(caId);
	if (cached?.number === number) return { ...cached, reissueAt: new Date(period + REISSUE_MS) };
	const ca = await caWithKey(caId);
	if (!ca) return null;
	const thisUpdate = new Date(thisUpdateSeconds * 1000);
	const crl: PublishedCrl = {
		der: createCrl(
			ca,
			revoked.map((r) => ({ serial: r.serial, revokedAt: r.revokedAt! })),
			{ number, nextUpdateDays: CRL_VALID_DAYS, now: thisUpdate }
		),
		number,
		thisUpdate,
		nextUpdate: new Date(thisUpdate.getTime() + CRL_VALID_DAYS * 86_400_000),
		reissueAt: new Date(period + REISSUE_MS)
	};
	signedCrls.set(caId, crl);
	return crl;
}

/** The internal CA's current CRL as PEM (the API's `GET …/crl`). */
export async function currentCrlPem(): Promise<string> {
	const ca = await issuingCa();
	const crl = ca && (await publishedCrl(ca.id));
	if (!crl) throw new ServiceError('not_found', 'There is no internal CA, so there is no CRL');
	return pem('X509 CRL', crl.der);
}
