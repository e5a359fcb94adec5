/**
 * The testbed's TLS certificates, made by the real openssl: one CA per testbed, and per host a leaf with the
 * host's name and address as subject alternative names, as a real fleet's internal CA would issue them.
 * The certificate flows read these files over SSH and see them served by each host's TLS listener.
 */
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface CertificateAuthority {
	certPath: string;
	keyPath: string;
}

export interface IssuedCertificate {
	/** PEM. */
	cert: string;
	/** PEM, unencrypted. */
	key: string;
	/** As `openssl x509 -fingerprint -sha256` prints it: `AB:CD:…`. */
	fingerprint: string;
	/** The certificate's notAfter. */
	validTo: Date;
}

const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export async function createCertificateAuthority(dir: string): Promise<CertificateAuthority> {
	const ca = { certPath: join(dir, 'ca.crt'), keyPath: join(dir, 'ca.key') };
	await run('openssl', [
		'req',
		'-x509',
		...ecKey,
		'-keyout',
		ca.keyPath,
		'-out',
		ca.certPath,
		'-days',
		'3650',
		'-subj',
		'/CN=Flotilla testbed CA'
	]);
	return ca;
}

/** A leaf for `name` and `address`, signed by the CA, valid for `days` from now (1 or more). */
export async function issueCertificate(
	ca: CertificateAuthority,
	name: string,
	address: string,
	days: number
): Promise<IssuedCertificate> {
	if (!Number.isInteger(days) || days < 1) throw new Error(`A certificate is valid for whole days (asked: ${days})`);
	const scratch = await mkdtemp(join(ca.certPath, '..', 'issue-'));
	try {
		const certPath = join(scratch, 'cert.pem');
		const keyPath = join(scratch, 'key.pem');
		await run('openssl', [
			'req',
			'-x509',
			'-CA',
			ca.certPath,
			'-CAkey',
			ca.keyPath,
			...ecKey,
			'-keyout',
			keyPath,
			'-out',
			certPath,
			'-days',
			String(days),
			'-subj',
			`/CN=${name}`,
			'-addext',
			`subjectAltName=DNS:${name},IP:${address}`,
			'-addext',
			'basicConstraints=critical,CA:FALSE'
		]);
		const cert = await readFile(certPath, 'utf8');
		const parsed = new X509Certificate(cert);
		return {
			cert,
			key: await readFile(keyPath, 'utf8'),
			fingerprint: parsed.fingerprint256,
			validTo: new Date(parsed.validTo)
		};
	} finally {
		await rm(scratch, { recursive: true, force: true });
	}
}
