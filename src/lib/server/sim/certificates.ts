import { createHash, createPublicKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { integer, oid, pem, sequence, set, time, tlv } from '$lib/server/certs/der';
import { newSerial } from '$lib/server/certs/issue';

/**
 * Real X.509 certificates for simulated nodes, and what `openssl x509` prints about them.
 *
 * node:crypto parses certificates but cannot issue them, so this writes the few structures a leaf certificate
 * needs (RFC 5280) with the internal CA's DER writer (certs/der.ts) and signs them with ECDSA P-256. The
 * result is an ordinary certificate: openssl reads it (src/lib/server/sim/certificates.spec.ts checks that
 * against the real `openssl x509`), and the simulator answers the certificate flows' commands from the PEM
 * it holds, exactly as a real host's openssl would from the file on disk.
 */
export interface SimCertificateAuthority {
	name: string;
	key: KeyObject;
	/** The CA's self-signed certificate (PEM), what a client would trust. */
	cert: string;
}

export interface SimCertificate {
	cert: string;
	key: string;
}

const OID = {
	commonName: '2.5.4.3',
	ecdsaWithSha256: '1.2.840.10045.4.3.2',
	subjectAltName: '2.5.29.17',
	basicConstraints: '2.5.29.19'
};

function name(commonName: string): Buffer {
	return sequence(set(sequence(oid(OID.commonName), tlv(0x0c, Buffer.from(commonName, 'utf8')))));
}

function subjectAltNames(names: string[]): Buffer {
	const general = names.map((n) =>
		isIPv4(n) ? tlv(0x87, Buffer.from(n.split('.').map(Number))) : tlv(0x82, Buffer.from(n, 'ascii'))
	);
	return sequence(oid(OID.subjectAltName), tlv(0x04, sequence(...general)));
}

function signed(tbs: Buffer, key: KeyObject): Buffer {
	const signature = sign('sha256', tbs, key);
	return sequence(tbs, sequence(oid(OID.ecdsaWithSha256)), tlv(0x03, Buffer.from([0]), signature));
}

function basicConstraints(ca: boolean): Buffer {
	return sequence(
		oid(OID.basicConstraints),
		tlv(0x01, Buffer.from([0xff])),
		tlv(0x04, ca ? sequence(tlv(0x01, Buffer.from([0xff]))) : sequence())
	);
}

/** A CA valid for ten years from now, with a self-signed certificate. */
export function newCertificateAuthority(caName: string): SimCertificateAuthority {
	const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
	const now = new Date();
	const tbs = sequence(
		tlv(0xa0, integer(Buffer.from([2]))),
		integer(newSerial()),
		sequence(oid(OID.ecdsaWithSha256)),
		name(caName),
		sequence(time(now), time(new Date(now.getTime() + 3650 * 86_400_000))),
		name(caName),
		publicKey.export({ type: 'spki', format: 'der' }),
		tlv(0xa3, sequence(basicConstraints(true)))
	);
	return { name: caName, key: privateKey, cert: pem('CERTIFICATE', signed(tbs, privateKey)) };
}

/**
 * A leaf for `commonName`, with `altNames` (host names and IPv4 addresses) as subject alternative names,
 * valid from `notBefore` until `notAfter`, signed by the CA.
 */
export function issueSimCertificate(
	ca: SimCertificateAuthority,
	opts: { commonName: string; altNames: string[]; notBefore: Date; notAfter: Date }
): SimCertificate {
	const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
	const extensions = tlv(0xa3, sequence(subjectAltNames(opts.altNames), basicConstraints(false)));
	const tbs = sequence(
		tlv(0xa0, integer(Buffer.from([2]))),
		integer(newSerial()),
		sequence(oid(OID.ecdsaWithSha256)),
		name(ca.name),
		sequence(time(opts.notBefore), time(opts.notAfter)),
		name(opts.commonName),
		publicKey.export({ type: 'spki', format: 'der' }),
		extensions
	);
	return {
		cert: pem('CERTIFICATE', signed(tbs, ca.key)),
		key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
	};
}

/**
 * What `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=<name>` makes: a new
 * P-256 key (PKCS#8 PEM) and a PKCS#10 request for it, signed with that key, as a rotation asks of a node.
 */
export function newSimCertificateRequest(commonName: string): { csr: string; key: string } {
	const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
	const info = sequence(
		integer(Buffer.from([0])),
		name(commonName),
		publicKey.export({ type: 'spki', format: 'der' }),
		// No attributes: an empty [0] set, as openssl writes it.
		tlv(0xa0)
	);
	return {
		csr: pem('CERTIFICATE REQUEST', signed(info, privateKey)),
		key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
	};
}

/** `C=DE\nCN=x` (node) as openssl's default name format prints it: `C = DE, CN = x`. */
function opensslName(nodeName: string): string {
	return nodeName
		.split('\n')
		.map((part) => part.replace('=', ' = '))
		.join(', ');
}

/**
 * What `openssl x509 -in <file> -noout <options>` prints for this PEM, for the options the console uses,
 * in the order given (as openssl prints them). Returns null for an option the simulator does not know, so
 * that a command it cannot answer fails loudly instead of passing with made-up output.
 */
export function describeCertificate(pemText: string, options: string[]): string[] | null {
	const cert = new X509Certificate(pemText);
	let digest: 'sha1' | 'sha256' = 'sha1';
	if (options.includes('-sha256')) digest = 'sha256';
	const lines: string[] = [];
	for (let i = 0; i < options.length; i++) {
		switch (options[i]) {
			case '-sha256':
				break;
			case '-fingerprint': {
				const hex = createHash(digest).update(cert.raw).digest('hex').toUpperCase();
				lines.push(`${digest === 'sha1' ? 'SHA1' : 'sha256'} Fingerprint=${hex.match(/../g)!.join(':')}`);
				break;
			}
			case '-enddate':
				lines.push(`notAfter=${cert.validTo}`);
				break;
			case '-startdate':
				lines.push(`notBefore=${cert.validFrom}`);
				break;
			case '-subject':
				lines.push(`subject=${opensslName(cert.subject)}`);
				break;
			case '-issuer':
				lines.push(`issuer=${opensslName(cert.issuer)}`);
				break;
			case '-serial':
				lines.push(`serial=${cert.serialNumber.toUpperCase()}`);
				break;
			case '-pubkey':
				lines.push(...publicKeyLines(cert.publicKey));
				break;
			case '-ext':
				if (options[++i] !== 'subjectAltName') return null;
				if (cert.subjectAltName) lines.push('X509v3 Subject Alternative Name: ', `    ${cert.subjectAltName}`);
				break;
			default:
				return null;
		}
	}
	return lines;
}

/** A public key as `openssl x509 -pubkey` and `openssl pkey -pubout` print it (SPKI PEM), line by line. */
function publicKeyLines(key: KeyObject): string[] {
	return (key.export({ type: 'spki', format: 'pem' }) as string).trimEnd().split('\n');
}

/** What `openssl pkey -in <file> -pubout` prints for this private key (PEM): its public key. */
export function publicKeyOf(privateKeyPem: string): string[] {
	return publicKeyLines(createPublicKey(privateKeyPem));
}
