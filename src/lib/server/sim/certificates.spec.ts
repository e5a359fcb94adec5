import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeCertificate, issueSimCertificate, newCertificateAuthority, publicKeyOf } from './certificates';

const run = promisify(execFile);
const options = ['-fingerprint', '-sha256', '-enddate', '-subject', '-issuer', '-ext', 'subjectAltName', '-serial'];

describe('simulated certificates', () => {
	let dir: string;
	beforeAll(async () => {
		dir = await mkdtemp(join(tmpdir(), 'flotilla-simcert-'));
	});
	afterAll(() => rm(dir, { recursive: true, force: true }));

	it('are real certificates: the real openssl reads them, verifies the signature and prints what the simulator prints', async () => {
		const ca = newCertificateAuthority('Flotilla demo CA');
		const notBefore = new Date('2026-01-01T00:00:00Z');
		for (const notAfter of [new Date('2026-04-01T12:34:56Z'), new Date('2051-03-05T01:02:03Z')]) {
			const { cert, key } = issueSimCertificate(ca, {
				commonName: 'app-01',
				altNames: ['app-01', 'app-01.example.net', '127.0.1.5'],
				notBefore,
				notAfter
			});
			const certPath = join(dir, 'cert.pem');
			await writeFile(certPath, cert);
			await writeFile(join(dir, 'key.pem'), key);
			const real = await run('openssl', ['x509', '-in', certPath, '-noout', ...options]);
			expect(describeCertificate(cert, options)).toEqual(real.stdout.trimEnd().split('\n'));
			// The key belongs to the certificate: openssl derives the same public key from both.
			const fromCert = await run('openssl', ['x509', '-in', certPath, '-noout', '-pubkey']);
			const fromKey = await run('openssl', ['pkey', '-in', join(dir, 'key.pem'), '-pubout']);
			expect(fromKey.stdout).toBe(fromCert.stdout);
			// ... and the simulator prints them as openssl does (a rotation without an endpoint compares them).
			expect(describeCertificate(cert, ['-pubkey'])).toEqual(fromCert.stdout.trimEnd().split('\n'));
			expect(publicKeyOf(key)).toEqual(fromKey.stdout.trimEnd().split('\n'));
			// Signed by the CA: openssl verifies the chain (dates aside: the first one has expired on purpose).
			await writeFile(join(dir, 'ca.pem'), ca.cert);
			const verified = await run('openssl', ['verify', '-no_check_time', '-CAfile', join(dir, 'ca.pem'), certPath]);
			expect(verified.stdout).toBe(`${certPath}: OK\n`);
		}
	});

	it('encode every random serial as strict DER: 1,000 of them all parse', () => {
		// One serial in 256 starts with a zero byte, which DER must drop; OpenSSL 3 refuses the certificate otherwise.
		const ca = newCertificateAuthority('Flotilla demo CA');
		const notBefore = new Date('2026-01-01T00:00:00Z');
		const notAfter = new Date('2027-01-01T00:00:00Z');
		const unreadable: string[] = [];
		for (let i = 0; i < 1_000; i++) {
			const { cert } = issueSimCertificate(ca, { commonName: `n${i}`, altNames: [`n${i}`], notBefore, notAfter });
			try {
				new X509Certificate(cert);
			} catch (err) {
				unreadable.push((err as Error).message);
			}
		}
		expect(unreadable).toEqual([]);
	});

	it('refuses options it cannot answer instead of making output up', () => {
		const ca = newCertificateAuthority('CA');
		const now = new Date();
		const { cert } = issueSimCertificate(ca, { commonName: 'x', altNames: ['x'], notBefore: now, notAfter: now });
		expect(describeCertificate(cert, ['-text'])).toBeNull();
		expect(describeCertificate(cert, ['-ext', 'keyUsage'])).toBeNull();
	});
});
