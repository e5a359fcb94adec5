import { createPrivateKey, generateKeyPairSync, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { asc, eq } from 'drizzle-orm';
import type { z } from 'zod';
import type { createCaSchema, importCaSchema } from '$lib/schemas/certificates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { db } from '$lib/server/db';
import { certAuthorities, type CertAuthority } from '$lib/server/db/schema';
import { conflict, ServiceError } from '$lib/server/errors';
import { createCaCertificate, type Signer } from './issue';
import { certificateBlocks } from './x509';

export type CreateCaInput = z.infer<typeof createCaSchema>;
export type ImportCaInput = z.infer<typeof importCaSchema>;

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

function sealContext(id: string): string {
	return `ca:${id}`;
}

/** Refuses a second issuing CA: rotation needs one answer to "who signs". */
async function assertNoIssuingCa(): Promise<void> {
	const [existing] = await db()
		.select({ name: certAuthorities.name })
		.from(certAuthorities)
		.where(eq(certAuthorities.issuing, true));
	if (existing) {
		throw conflict(`The internal CA ${existing.name} exists already`, { name: 'an internal CA exists already' });
	}
}

async function storeIssuingCa(actor: Actor, name: string, cert: X509Certificate, key: KeyObject, action: string) {
	const id = randomUUID();
	const keyPem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
	const [row] = await db()
		.insert(certAuthorities)
		.values({
			id,
			name,
			certPem: cert.toString(),
			fingerprint: cert.fingerprint256,
			sealedKey: sealSecret(masterKey(), keyPem, sealContext(id)),
			issuing: true,
			notAfter: cert.validToDate
		})
		.onConflictDoNothing()
		.returning();
	if (!row) throw conflict('That CA (or its name) is already known', { name: 'already used' });
	await recordAudit(actor, {
		action,
		targetType: 'ca',
		targetId: row.id,
		details: { name, fingerprint: row.fingerprint, not_after: row.notAfter }
	});
	return row;
}

/** A new internal CA: the key is made here and only ever stored sealed. */
export async function createInternalCa(actor: Actor, input: CreateCaInput): Promise<CertAuthority> {
	await assertNoIssuingCa();
	const { privateKey } =
		input.key_type === 'rsa'
			? generateKeyPairSync('rsa', { modulusLength: 3072 })
			: input.key_type === 'ed25519'
				? generateKeyPairSync('ed25519')
				: generateKeyPairSync('ec', { namedCurve: 'P-256' });
	const cert = new X509Certificate(createCaCertificate(input.name, privateKey, input.validity_days));
	return storeIssuingCa(actor, input.name, cert, privateKey, 'certificates.ca_created');
}

/** An existing CA and its key, to issue from here on; the key must be the certificate's. */
export async function importInternalCa(actor: Actor, input: ImportCaInput): Promise<CertAuthority> {
	const cert = parseCaCertificate(input.cert_pem, 'cert_pem');
	let key: KeyObject;
	try {
		key = createPrivateKey(input.key_pem);
	} catch {
		// The key's text is never echoed, only that it could not be read.
		throw new ServiceError('validation_failed', 'Not a private key the console can read (PEM, unencrypted)', {
			key_pem: 'is not an unencrypted PEM private key'
		});
	}
	if (!cert.checkPrivateKey(key)) {
		throw new ServiceError('validation_failed', 'The key does not belong to the certificate', {
			key_pem: 'is not the key of cert_pem'
		});
	}
	await assertNoIssuingCa();
	return storeIssuingCa(actor, input.name, cert, key, 'certificates.ca_imported');
}

export type SigningCa = Signer & { id: string; name: string };

function unsealed(row: CertAuthority): SigningCa | null {
	if (!row.sealedKey) return null;
	const key = createPrivateKey(openSecret(masterKey(), row.sealedKey, sealContext(row.id)));
	return { id: row.id, name: row.name, cert: new X509Certificate(row.certPem), key };
}

/** The internal CA with its key unsealed, for signing; null when there is none. */
export async function issuingCa(): Promise<SigningCa | null> {
	const [row] = await db().select().from(certAuthorities).where(eq(certAuthorities.issuing, true));
	return row ? unsealed(row) : null;
}

/** The CA `id` with its key unsealed (to sign its CRL); null when it is unknown or only trusted. */
export async function caWithKey(id: string): Promise<SigningCa | null> {
	const [row] = await db().select().from(certAuthorities).where(eq(certAuthorities.id, id));
	return row ? unsealed(row) : null;
}
