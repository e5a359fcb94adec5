import { X509Certificate } from 'node:crypto';
import { asc } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certAuthorities, type CertAuthority } from '$lib/server/db/schema';
import { conflict, ServiceError } from '$lib/server/errors';
import { certificateBlocks } from './x509';

/**
 * The CAs the console knows (docs/certificates.md, "Internal CA"): CAs it only trusts when it verifies chains,
 * and at most one internal CA whose key it holds, sealed, to issue certificates.
 */

/** A CA certificate from PEM: exactly one certificate, and a CA (basicConstraints CA:TRUE). */
export function parseCaCertificate(pem: string, field: string): X509Certificate {
	const blocks = certificateBlocks(pem);
	if (blocks.length !== 1) {
		throw new ServiceError('validation_failed', 'Give exactly one CA certificate in PEM', {
			[field]: blocks.length ? 'holds more than one certificate' : 'is not a PEM certificate'
		});
	}
	let cert: X509Certificate;
	try {
		cert = new X509Certificate(blocks[0]!);
	} catch {
		throw new ServiceError('validation_failed', 'Not an X.509 certificate', { [field]: 'is not an X.509 certificate' });
	}
	if (!cert.ca) {
		throw new ServiceError('validation_failed', 'Not a CA certificate', {
			[field]: 'is not a CA (basicConstraints CA:TRUE)'
		});
	}
	return cert;
}

/** Adds a CA that chains are verified against. */
export async function trustAuthority(actor: Actor, input: { name: string; cert_pem: string }): Promise<CertAuthority> {
	const cert = parseCaCertificate(input.cert_pem, 'cert_pem');
	const [row] = await db()
		.insert(certAuthorities)
		.values({
			name: input.name,
			certPem: cert.toString(),
			fingerprint: cert.fingerprint256,
			notAfter: cert.validToDate
		})
		.onConflictDoNothing()
		.returning();
	if (!row) throw conflict('That CA (or its name) is already known', { cert_pem: 'already trusted' });
	await recordAudit(actor, {
		action: 'certificates.ca_trusted',
		targetType: 'ca',
		targetId: row.id,
		details: { name: row.name, fingerprint: row.fingerprint }
	});
	return row;
}

export function listAuthorities(): Promise<CertAuthority[]> {
	return db().select().from(certAuthorities).orderBy(asc(certAuthorities.createdAt));
}

export const presentAuthority = (a: CertAuthority) => ({
	id: a.id,
	name: a.name,
	fingerprint: a.fingerprint,
	issuing: a.issuing,
	has_key: a.sealedKey !== null,
	not_after: a.notAfter,
	cert_pem: a.certPem,
	created_at: a.createdAt
});
