import { createHash, createPublicKey, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import {
	bitString,
	boolTrue,
	children,
	fromPem,
	integer,
	octetString,
	oid,
	pem,
	readDer,
	readOid,
	sequence,
	set,
	time,
	tlv,
	utf8,
	type Der
} from './der';

/**
 * The internal CA's three acts: its own self-signed certificate, a node's certificate from the node's CSR
 * (the node keeps its private key; the CSR only proves it holds it), and the CRL of what it revoked.
 */

const OID = {
	commonName: '2.5.4.3',
	subjectKeyIdentifier: '2.5.29.14',
	keyUsage: '2.5.29.15',
	subjectAltName: '2.5.29.17',
	basicConstraints: '2.5.29.19',
	crlNumber: '2.5.29.20',
	crlDistributionPoints: '2.5.29.31',
	authorityKeyIdentifier: '2.5.29.35',
	extKeyUsage: '2.5.29.37',
	serverAuth: '1.3.6.1.5.5.7.3.1',
	clientAuth: '1.3.6.1.5.5.7.3.2',
	ecdsaWithSha256: '1.2.840.10045.4.3.2',
	sha256WithRsa: '1.2.840.113549.1.1.11',
	ed25519: '1.3.101.112'
};

/** The hash a CSR's signature algorithm uses (null: the algorithm hashes itself, like Ed25519). */
const CSR_SIGNATURES: Record<string, string | null> = {
	'1.2.840.10045.4.3.2': 'sha256',
	'1.2.840.10045.4.3.3': 'sha384',
	'1.2.840.10045.4.3.4': 'sha512',
	'1.2.840.113549.1.1.11': 'sha256',
	'1.2.840.113549.1.1.12': 'sha384',
	'1.2.840.113549.1.1.13': 'sha512',
	'1.3.101.112': null
};

export interface Signer {
	/** The CA's certificate. */
	cert: X509Certificate;
	key: KeyObject;
}

/** The AlgorithmIdentifier and the signing call for the CA's key type. */
function signatureFor(key: KeyObject): { alg: Buffer; sign: (data: Buffer) => Buffer } {
	switch (key.asymmetricKeyType) {
		case 'ec':
			return { alg: sequence(oid(OID.ecdsaWithSha256)), sign: (d) => sign('sha256', d, key) };
		case 'rsa':
			return { alg: sequence(oid(OID.sha256WithRsa), tlv(0x05)), sign: (d) => sign('sha256', d, key) };
		case 'ed25519':
			return { alg: sequence(oid(OID.ed25519)), sign: (d) => sign(null, d, key) };
		default:
			throw new Error(`A CA key of type ${key.asymmetricKeyType} cannot sign here (EC, RSA or Ed25519)`);
	}
}

function signed(tbs: Buffer, key: KeyObject): Buffer {
	const s = signatureFor(key);
	return sequence(tbs, s.alg, bitString(s.sign(tbs)));
}

const nameOf = (commonName: string) => sequence(set(sequence(oid(OID.commonName), utf8(commonName))));

function extension(id: string, value: Buffer, critical = false): Buffer {
	return sequence(oid(id), ...(critical ? [boolTrue()] : []), octetString(value));
}

/** KeyUsage bits, most significant first: digitalSignature(0), keyEncipherment(2), keyCertSign(5), cRLSign(6). */
function keyUsage(bits: number[]): Buffer {
	let byte = 0;
	for (const b of bits) byte |= 0x80 >> b;
	const unused = Math.max(0, 7 - Math.max(...bits));
	return tlv(0x03, Buffer.from([unused, byte]));
}

/** The SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1): how a CA's key is named in AKI. */
function keyIdentifier(spki: Buffer): Buffer {
	const bits = children(readDer(spki))[1]!;
	return createHash('sha1').update(bits.value.subarray(1)).digest();
}

function ipBytes(ip: string): Buffer {
	if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
	const [head = '', tail = ''] = ip.split('::');
	const part = (s: string) => (s ? s.split(':') : []);
	const h = part(head);
	const t = ip.includes('::') ? part(tail) : [];
	const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
	return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

function subjectAltNames(names: string[]): Buffer {
	return sequence(
		...names.map((n) => (isIPv4(n) || isIPv6(n) ? tlv(0x87, ipBytes(n)) : tlv(0x82, Buffer.from(n, 'ascii'))))
	);
}

/** Hex (any length) as big-endian bytes. */
const hexBytes = (hex: string) => Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex');

export function newSerial(): Buffer {
	const serial = randomBytes(16);
	serial[0]! &= 0x7f;
	serial[0]! |= 0x01;
	return serial;
}

/** The parts of a certificate's TBS the CA needs: its subject Name (as issuer) and its public key. */
function tbsParts(cert: X509Certificate): { subject: Buffer; spki: Buffer } {
	const tbs = children(children(readDer(cert.raw))[0]!);
	const fields = tbs[0]!.tag === 0xa0 ? tbs.slice(1) : tbs;
	return { subject: fields[4]!.raw, spki: fields[5]!.raw };
}

/** A CA certificate for `key`, self-signed, valid from now for `days`. */
export function createCaCertificate(name: string, key: KeyObject, days: number, now = new Date()): string {
	const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
	const tbs = sequence(
		tlv(0xa0, integer(Buffer.from([2]))),
		integer(newSerial()),
		signatureFor(key).alg,
		nameOf(name),
		sequence(time(new Date(now.getTime() - 60_000)), time(new Date(now.getTime() + days * 86_400_000))),
		nameOf(name),
		spki,
		tlv(
			0xa3,
			sequence(
				extension(OID.basicConstraints, sequence(boolTrue()), true),
				extension(OID.keyUsage, keyUsage([5, 6]), true),
				extension(OID.subjectKeyIdentifier, octetString(keyIdentifier(spki)))
			)
		)
	);
	return pem('CERTIFICATE', signed(tbs, key));
}

export class CsrError extends Error {}

/**
 * The public key of a CSR whose signature verifies (the requester holds the private key). Throws a CsrError
 * for anything else: not a CSR, a signature that does not verify, an algorithm not known here.
 */
export function csrPublicKey(csrPem: string): Buffer {
	const der = fromPem(csrPem, 'CERTIFICATE REQUEST');
	if (!der) throw new CsrError('not a PEM certificate request');
	let info: Der, alg: Der, sig: Der;
	try {
		[info, alg, sig] = children(readDer(der)) as [Der, Der, Der];
		const spki = children(info)[2]!.raw;
		const algorithm = readOid(children(alg)[0]!);
		if (!(algorithm in CSR_SIGNATURES)) throw new CsrError(`unsupported CSR signature algorithm ${algorithm}`);
		const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
		if (!verify(CSR_SIGNATURES[algorithm] ?? null, info.raw, key, sig.value.subarray(1))) {
			throw new CsrError('the CSR signature does not verify');
		}
		return spki;
	} catch (err) {
		if (err instanceof CsrError) throw err;
		throw new CsrError(`not a valid certificate request (${(err as Error).message})`);
	}
}

export interface LeafRequest {
	csrPem: string;
	commonName: string;
	/** DNS names and IP addresses. */
	sans: string[];
	days: number;
	/** Where relying parties fetch the CA's CRL (a CRL Distribution Point); none when the console has no ORIGIN. */
	crlUrl?: string | null;
	now?: Date;
}

/** CRLDistributionPoints with one point whose fullName is one URI (RFC 5280 4.2.1.13). */
function crlDistributionPoint(url: string): Buffer {
	return sequence(sequence(tlv(0xa0, tlv(0xa0, tlv(0x86, Buffer.from(url, 'ascii'))))));
}

/** A server certificate for the CSR's key, signed by the CA. */
export function issueFromCsr(ca: Signer, req: LeafRequest): string {
	const spki = csrPublicKey(req.csrPem);
	const now = req.now ?? new Date();
	const issuer = tbsParts(ca.cert);
	const isRsa = createPublicKey({ key: spki, format: 'der', type: 'spki' }).asymmetricKeyType === 'rsa';
	const tbs = sequence(
		tlv(0xa0, integer(Buffer.from([2]))),
		integer(newSerial()),
		signatureFor(ca.key).alg,
		issuer.subject,
		// A minute back: a node whose clock runs a little behind still accepts it at once.
		sequence(time(new Date(now.getTime() - 60_000)), time(new Date(now.getTime() + req.days * 86_400_000))),
		nameOf(req.commonName),
		spki,
		tlv(
			0xa3,
			sequence(
				extension(OID.basicConstraints, sequence(), true),
				extension(OID.keyUsage, keyUsage(isRsa ? [0, 2] : [0]), true),
				extension(OID.extKeyUsage, sequence(oid(OID.serverAuth), oid(OID.clientAuth))),
				extension(OID.subjectAltName, subjectAltNames(req.sans)),
				extension(OID.subjectKeyIdentifier, octetString(keyIdentifier(spki))),
				extension(OID.authorityKeyIdentifier, sequence(tlv(0x80, keyIdentifier(issuer.spki)))),
				...(req.crlUrl ? [extension(OID.crlDistributionPoints, crlDistributionPoint(req.crlUrl))] : [])
			)
		)
	);
	return pem('CERTIFICATE', signed(tbs, ca.key));
}

/** A v2 CRL (DER) of the revoked serials (hex, as X509Certificate.serialNumber gives them). */
export function createCrl(
	ca: Signer,
	revoked: { serial: string; revokedAt: Date }[],
	opts: { number: bigint; nextUpdateDays: number; now?: Date }
): Buffer {
	const now = opts.now ?? new Date();
	const issuer = tbsParts(ca.cert);
	const entries = revoked.map((r) => sequence(integer(hexBytes(r.serial)), time(r.revokedAt)));
	const tbs = sequence(
		integer(Buffer.from([1])),
		signatureFor(ca.key).alg,
		issuer.subject,
		time(now),
		time(new Date(now.getTime() + opts.nextUpdateDays * 86_400_000)),
		...(entries.length ? [sequence(...entries)] : []),
		tlv(
			0xa0,
			sequence(
				extension(OID.crlNumber, integer(hexBytes(opts.number.toString(16)))),
				extension(OID.authorityKeyIdentifier, sequence(tlv(0x80, keyIdentifier(issuer.spki))))
			)
		)
	);
	return signed(tbs, ca.key);
}
