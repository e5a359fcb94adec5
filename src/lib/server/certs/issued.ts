import { X509Certificate } from 'node:crypto';
import { and, desc, eq, isNull } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { issuedCertificates, type IssuedCertificate } from '$lib/server/db/schema';
import { conflict, notFound } from '$lib/server/errors';

/**
 * The inventory of what the internal CA issued (docs/certificates.md, "Internal CA"): list, export as CSV or
 * JSON, and revoke (the CRL of the revoked ones: ./crl.ts).
 */

export async function recordIssued(entry: {
	caId: string;
	nodeId: string;
	nodeName: string;
	role: string;
	pem: string;
	runId: string;
}): Promise<IssuedCertificate> {
	const cert = new X509Certificate(entry.pem);
	const [row] = await db()
		.insert(issuedCertificates)
		.values({
			caId: entry.caId,
			serial: cert.serialNumber.toUpperCase(),
			nodeId: entry.nodeId,
			nodeName: entry.nodeName,
			role: entry.role,
			subject: cert.subject.replace(/\n/g, ', '),
			sans: cert.subjectAltName ? cert.subjectAltName.split(', ') : [],
			fingerprint: cert.fingerprint256,
			pem: entry.pem,
			notBefore: cert.validFromDate,
			notAfter: cert.validToDate,
			runId: entry.runId
		})
		.returning();
	return row!;
}

export function listIssued(): Promise<IssuedCertificate[]> {
	return db().select().from(issuedCertificates).orderBy(desc(issuedCertificates.createdAt));
}

export const presentIssued = (c: IssuedCertificate) => ({
	id: c.id,
	serial: c.serial,
	node: c.nodeName,
	node_id: c.nodeId,
	role: c.role,
	subject: c.subject,
	sans: c.sans,
	fingerprint_sha256: c.fingerprint,
	not_before: c.notBefore,
	not_after: c.notAfter,
	run_id: c.runId,
	revoked_at: c.revokedAt,
	revoke_reason: c.revokeReason,
	issued_at: c.createdAt
});

const CSV_COLUMNS = [
	'serial',
	'node',
	'role',
	'subject',
	'sans',
	'fingerprint_sha256',
	'not_before',
	'not_after',
	'revoked_at',
	'revoke_reason',
	'issued_at'
] as const;

/** One CSV field: quoted when it must be, and never read as a formula by a spreadsheet. */
function csvField(v: unknown): string {
	let s =
		v === null || v === undefined
			? ''
			: v instanceof Date
				? v.toISOString()
				: Array.isArray(v)
					? v.join(' ')
					: String(v);
	if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
	return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export async function exportIssuedCsv(): Promise<string> {
	const rows = (await listIssued()).map(presentIssued);
	const lines = [CSV_COLUMNS.join(','), ...rows.map((r) => CSV_COLUMNS.map((c) => csvField(r[c])).join(','))];
	return `${lines.join('\r\n')}\r\n`;
}

/** Revokes an issued certificate; a second revocation is refused (the first date is the one the CRL states). */
export async function revokeIssued(actor: Actor, id: string, reason: string): Promise<IssuedCertificate> {
	const [row] = await db()
		.update(issuedCertificates)
		.set({ revokedAt: new Date(), revokeReason: reason })
		.where(and(eq(issuedCertificates.id, id), isNull(issuedCertificates.revokedAt)))
		.returning();
	if (!row) {
		const [known] = await db().select().from(issuedCertificates).where(eq(issuedCertificates.id, id));
		if (!known) throw notFound('Issued certificate');
		throw conflict(`Already revoked on ${known.revokedAt!.toISOString()}`, { id: 'already revoked' });
	}
	await recordAudit(actor, {
		action: 'certificates.revoke',
		targetType: 'certificate',
		targetId: id,
		details: { serial: row.serial, node: row.nodeName, reason }
	});
	return row;
}
