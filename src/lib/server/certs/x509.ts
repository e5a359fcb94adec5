import { X509Certificate } from 'node:crypto';

/**
 * What the inventory records about a certificate, read with node:crypto: the same facts `openssl x509` prints
 * (subject, issuer, SANs, validity, SHA-256 fingerprint, key type and size).
 */
export interface CertFacts {
	pem: string;
	/** `AB:CD:…`, as `openssl x509 -fingerprint -sha256` prints it. */
	fingerprint: string;
	subject: string;
	issuer: string;
	/** `DNS:name` and `IP Address:1.2.3.4` entries, as openssl prints them. */
	sans: string[];
	serial: string;
	notBefore: Date;
	notAfter: Date;
	/** `rsa`, `ec`, `ed25519`, … */
	keyType: string;
	/** RSA modulus bits, or the size of the EC curve's field. */
	keyBits: number | null;
	selfSigned: boolean;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----/g;

/** Every certificate block of a PEM text, in order (a file may hold a leaf and its intermediates). */
export function certificateBlocks(text: string): string[] {
	return [...text.matchAll(PEM_CERT)].map((m) => `${m[0]}\n`);
}

const CURVE_BITS: Record<string, number> = {
	prime256v1: 256,
	'P-256': 256,
	secp384r1: 384,
	'P-384': 384,
	secp521r1: 521,
	'P-521': 521
};

function keyOf(cert: X509Certificate): { keyType: string; keyBits: number | null } {
	const key = cert.publicKey;
	const type = key.asymmetricKeyType ?? 'unknown';
	const details = key.asymmetricKeyDetails ?? {};
	if (details.modulusLength) return { keyType: type, keyBits: details.modulusLength };
	if (details.namedCurve) return { keyType: type, keyBits: CURVE_BITS[details.namedCurve] ?? null };
	if (type === 'ed25519') return { keyType: type, keyBits: 256 };
	if (type === 'ed448') return { keyType: type, keyBits: 456 };
	return { keyType: type, keyBits: null };
}

/** A distinguished name on one line, as openssl's default format prints it: `C = DE, CN = x`. */
function oneLine(name: string): string {
	return name
		.split('\n')
		.filter(Boolean)
		.map((part) => part.replace('=', ' = '))
		.join(', ');
}

export function isSelfSigned(cert: X509Certificate): boolean {
	return cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** Facts about one certificate (the first of `pem`). Throws on anything that is not an X.509 certificate. */
export function describeCertificate(pem: string | X509Certificate): CertFacts {
	const cert = typeof pem === 'string' ? new X509Certificate(pem) : pem;
	return {
		pem: cert.toString(),
		fingerprint: cert.fingerprint256,
		subject: oneLine(cert.subject),
		issuer: oneLine(cert.issuer),
		sans: cert.subjectAltName ? cert.subjectAltName.split(', ') : [],
		serial: cert.serialNumber.toUpperCase(),
		notBefore: cert.validFromDate,
		notAfter: cert.validToDate,
		...keyOf(cert),
		selfSigned: isSelfSigned(cert)
	};
}

export interface ChainResult {
	verified: boolean;
	/** Why the chain does not verify, in words. */
	error: string | null;
}

const MAX_DEPTH = 8;

/**
 * Whether `leaf` chains to one of `trusted` through `intermediates` (what the endpoint served after the leaf,
 * or the rest of the file): each link's issuer name matches and its signature verifies, and every certificate
 * is within its validity at `now`. Trust anchors are trusted as given, like `openssl verify -CAfile`.
 */
export function verifyChain(
	leaf: X509Certificate,
	intermediates: X509Certificate[],
	trusted: X509Certificate[],
	now: Date = new Date()
): ChainResult {
	if (!trusted.length) return { verified: false, error: 'no trusted CA is configured' };
	const within = (c: X509Certificate) => c.validFromDate <= now && now <= c.validToDate;
	const signs = (issuer: X509Certificate, c: X509Certificate) => c.checkIssued(issuer) && c.verify(issuer.publicKey);
	let current = leaf;
	for (let depth = 0; depth < MAX_DEPTH; depth++) {
		if (!within(current)) {
			return { verified: false, error: `${oneLine(current.subject)} is not valid now (until ${current.validTo})` };
		}
		if (trusted.some((t) => t.fingerprint256 === current.fingerprint256)) return { verified: true, error: null };
		const anchor = trusted.find((t) => signs(t, current));
		if (anchor) {
			if (!within(anchor)) return { verified: false, error: `the CA ${oneLine(anchor.subject)} is not valid now` };
			return { verified: true, error: null };
		}
		const next = intermediates.find((c) => c !== current && signs(c, current));
		if (!next) {
			return {
				verified: false,
				error: isSelfSigned(current)
					? 'self-signed, and not one of the trusted CAs'
					: `no trusted CA issued ${oneLine(current.subject)} (issuer ${oneLine(current.issuer)})`
			};
		}
		current = next;
	}
	return { verified: false, error: `the chain is longer than ${MAX_DEPTH}` };
}
