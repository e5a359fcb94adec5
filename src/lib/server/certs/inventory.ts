import { X509Certificate } from 'node:crypto';
import { and, asc, eq, inArray, isNotNull, notInArray, sql } from 'drizzle-orm';
import { config } from '$lib/server/config';
import { db } from '$lib/server/db';
import { certificates, issuedCertificates, nodes, type Certificate, type CertSource } from '$lib/server/db/schema';
import { daysLeft, expiryLevel, type ExpiryLevel, type ExpiryThresholds } from './expiry';
import { certificateBlocks, describeCertificate, verifyChain, type CertFacts } from './x509';

/**
 * The inventory's rows: per node, what each endpoint serves, each file holds and each report said, as last
 * seen. A failed look keeps the last good reading and says why it failed (`error`), so an endpoint that went
 * down still shows the certificate it served.
 */

export interface Observation {
	source: CertSource;
	location: string;
	role: string | null;
	servername?: string | null;
	/** What was found; absent when the look failed. */
	facts?: CertFacts & { chainVerified: boolean; chainError: string | null };
	error?: string;
}

/** Facts about a PEM text's first certificate, with its chain judged against `trusted` (the rest of the text as intermediates). */
export function observe(
	pem: string,
	trusted: X509Certificate[],
	intermediates?: X509Certificate[]
): Observation['facts'] {
	const blocks = certificateBlocks(pem);
	const leaf = new X509Certificate(blocks[0] ?? pem);
	const rest = intermediates ?? blocks.slice(1).map((b) => new X509Certificate(b));
	const chain = verifyChain(leaf, rest, trusted);
	return { ...describeCertificate(leaf), chainVerified: chain.verified, chainError: chain.error };
}

/**
 * Writes one node's observations. `mismatch` is set on the file and endpoint rows of a role whose endpoint
 * serves another certificate than the file holds. With `replace`, rows of those sources at locations not
 * observed now are removed (a role no longer on the node, an endpoint no longer configured).
 *
 * A location has one row per source: a new report at a location replaces the earlier one, and a good reading of
 * the console's own (a file read, a handshake) at a location a node reported replaces that report, which is
 * older than what the console just saw (otherwise a node that reported its expiring certificate would stay
 * expiring after a rotation renewed it).
 */
export async function recordObservations(
	nodeId: string,
	observed: Observation[],
	replace: CertSource[] = []
): Promise<void> {
	const mismatched = new Set<string>();
	for (const file of observed.filter((o) => o.source === 'file' && o.facts)) {
		for (const ep of observed.filter((o) => o.source === 'endpoint' && o.role === file.role && o.facts)) {
			if (ep.facts!.fingerprint !== file.facts!.fingerprint) mismatched.add(file.location).add(ep.location);
		}
	}
	const now = new Date();
	await db().transaction(async (tx) => {
		for (const o of observed) {
			const base = {
				role: o.role,
				servername: o.servername ?? null,
				checkedAt: now,
				error: o.error ?? null,
				mismatch: mismatched.has(o.location)
			};
			const found = o.facts
				? {
						pem: o.facts.pem,
						fingerprint: o.facts.fingerprint,
						subject: o.facts.subject,
						issuer: o.facts.issuer,
						sans: o.facts.sans,
						serial: o.facts.serial,
						notBefore: o.facts.notBefore,
						notAfter: o.facts.notAfter,
						keyType: o.facts.keyType,
						keyBits: o.facts.keyBits,
						selfSigned: o.facts.selfSigned,
						chainVerified: o.facts.chainVerified,
						chainError: o.facts.chainError
					}
				: {};
			await tx
				.insert(certificates)
				.values({ nodeId, source: o.source, location: o.location, ...base, ...found })
				.onConflictDoUpdate({
					target: [certificates.nodeId, certificates.source, certificates.location],
					set: { ...base, ...found }
				});
		}
		const readHere = observed.filter((o) => o.source !== 'report' && o.facts).map((o) => o.location);
		if (readHere.length) {
			await tx
				.delete(certificates)
				.where(
					and(
						eq(certificates.nodeId, nodeId),
						eq(certificates.source, 'report'),
						inArray(certificates.location, readHere)
					)
				);
		}
		if (replace.length) {
			const kept = observed.map((o) => o.location);
			await tx
				.delete(certificates)
				.where(
					and(
						eq(certificates.nodeId, nodeId),
						inArray(certificates.source, replace),
						kept.length ? notInArray(certificates.location, kept) : undefined
					)
				);
		}
	});
}

export interface InventoryItem {
	id: string;
	node_id: string;
	node: string;
	source: CertSource;
	location: string;
	role: string | null;
	servername: string | null;
	subject: string | null;
	sans: string[];
	issuer: string | null;
	serial: string | null;
	not_before: Date | null;
	not_after: Date | null;
	days_left: number | null;
	level: ExpiryLevel | null;
	fingerprint_sha256: string | null;
	key_type: string | null;
	key_bits: number | null;
	self_signed: boolean | null;
	chain_verified: boolean | null;
	chain_error: string | null;
	mismatch: boolean;
	error: string | null;
	checked_at: Date;
}

/** When the internal CA revoked this very certificate, and why. */
interface Revocation {
	revokedAt: Date;
	reason: string | null;
}

export function presentCertificate(
	c: Certificate,
	nodeName: string,
	t: ExpiryThresholds = config().certThresholds,
	now = new Date(),
	revoked: Revocation | null = null
): InventoryItem {
	// A revoked certificate still in service fails verification as `openssl verify -crl_check` would: it is judged
	// as the inventory is read, so a revocation shows at once, not at the next scan.
	const chain = revoked
		? {
				chain_verified: false,
				chain_error: `revoked by the internal CA on ${revoked.revokedAt.toISOString().slice(0, 10)}${revoked.reason ? ` (${revoked.reason})` : ''}`
			}
		: { chain_verified: c.chainVerified, chain_error: c.chainError };
	return {
		id: c.id,
		node_id: c.nodeId,
		node: nodeName,
		source: c.source,
		location: c.location,
		role: c.role,
		servername: c.servername,
		subject: c.subject,
		sans: c.sans,
		issuer: c.issuer,
		serial: c.serial,
		not_before: c.notBefore,
		not_after: c.notAfter,
		days_left: c.notAfter ? daysLeft(c.notAfter, now) : null,
		level: c.notAfter ? expiryLevel(c.notAfter, t, now) : null,
		fingerprint_sha256: c.fingerprint,
		key_type: c.keyType,
		key_bits: c.keyBits,
		self_signed: c.selfSigned,
		...chain,
		mismatch: c.mismatch,
		error: c.error,
		checked_at: c.checkedAt
	};
}

/** The whole inventory (or one node's), soonest expiry first. */
export async function listInventory(filter: { nodeIds?: string[] } = {}): Promise<InventoryItem[]> {
	const rows = await db()
		.select({
			c: certificates,
			node: nodes.name,
			revokedAt: issuedCertificates.revokedAt,
			revokeReason: issuedCertificates.revokeReason
		})
		.from(certificates)
		.innerJoin(nodes, eq(nodes.id, certificates.nodeId))
		.leftJoin(
			issuedCertificates,
			and(eq(issuedCertificates.fingerprint, certificates.fingerprint), isNotNull(issuedCertificates.revokedAt))
		)
		.where(filter.nodeIds ? inArray(certificates.nodeId, filter.nodeIds) : undefined)
		.orderBy(sql`${certificates.notAfter} asc nulls first`, asc(nodes.name), asc(certificates.location));
	const t = config().certThresholds;
	const now = new Date();
	return rows.map((r) =>
		presentCertificate(r.c, r.node, t, now, r.revokedAt ? { revokedAt: r.revokedAt, reason: r.revokeReason } : null)
	);
}
