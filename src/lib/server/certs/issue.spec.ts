import { execFile } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pem } from './der';
import { createCaCertificate, createCrl, CsrError, issueFromCsr, type Signer } from './issue';

/** What the internal CA makes, judged by the real openssl. */

const run = promisify(execFile);
let dir: string;

const openssl = async (args: string[]) => (await run('openssl', args, { cwd: dir })).stdout;

/** A key and CSR made by openssl, as on a node. */
async function nodeCsr(name: string, keyArgs: string[]): Promise<string> {
	await openssl([
		'req',
		'-new',
		...keyArgs,
		'-nodes',
		'-keyout',
		`${name}.key`,
		'-out',
		`${name}.csr`,
		'-subj',
		`/CN=${name}`
	]);
	return readFile(join(dir, `${name}.csr`), 'utf8');
}

function newCa(type: 'ec' | 'rsa' | 'ed25519'): Signer {
	const { privateKey } =
		type === 'ec'
			? generateKeyPairSync('ec', { namedCurve: 'P-256' })
			: type === 'rsa'
				? generateKeyPairSync('rsa', { modulusLength: 2048 })
				: generateKeyPairSync('ed25519');
	return { key: privateKey, cert: new X509Certificate(createCaCertificate(`Flotilla ${type} CA`, privateKey, 3650)) };
}

beforeAll(async () => {
	dir = await mkdtemp(join(tmpdir(), 'flotilla-issue-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the internal CA', () => {
	it.each(['ec', 'rsa', 'ed25519'] as const)(
		'a %s CA issues from openssl CSRs (EC and RSA) certificates that openssl verify accepts',
		async (type) => {
			const ca = newCa(type);
			expect(ca.cert.ca).toBe(true);
			await writeFile(join(dir, `ca-${type}.pem`), ca.cert.toString());
			for (const [name, keyArgs] of [
				[`ec-${type}`, ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']],
				[`rsa-${type}`, ['-newkey', 'rsa:2048']]
			] as const) {
				const csr = await nodeCsr(name, [...keyArgs]);
				const leaf = issueFromCsr(ca, {
					csrPem: csr,
					commonName: 'web-1',
					sans: ['web-1', 'web-1.example.org', '10.0.0.7', '2001:db8::1'],
					days: 90
				});
				await writeFile(join(dir, `${name}.crt`), leaf);
				expect(await openssl(['verify', '-CAfile', `ca-${type}.pem`, `${name}.crt`])).toBe(`${name}.crt: OK\n`);
				const text = await openssl(['x509', '-in', `${name}.crt`, '-noout', '-text']);
				expect(text).toContain(
					'DNS:web-1, DNS:web-1.example.org, IP Address:10.0.0.7, IP Address:2001:DB8:0:0:0:0:0:1'
				);
				expect(text).toContain('CA:FALSE');
				expect(text).toContain('TLS Web Server Authentication');
				// Without the console's ORIGIN there is no URL to give, so no CRL Distribution Point.
				expect(text).not.toContain('CRL Distribution Points');
				// The certificate holds the node's own key: the node's key and the certificate match.
				const certKey = await openssl(['x509', '-in', `${name}.crt`, '-noout', '-pubkey']);
				const nodeKey = await openssl(['pkey', '-in', `${name}.key`, '-pubout']);
				expect(certKey).toBe(nodeKey);
				const parsed = new X509Certificate(leaf);
				expect(parsed.subject).toBe('CN=web-1');
				expect(Math.round((parsed.validToDate.getTime() - Date.now()) / 86_400_000)).toBe(90);
			}
		}
	);

	it('refuses a CSR whose signature does not verify, and anything that is not a CSR', async () => {
		const ca = newCa('ec');
		const csr = await nodeCsr('tampered', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
		const lines = csr.split('\n');
		// Flip a character inside the signed part (the subject), keeping valid base64.
		lines[2] = lines[2]!.slice(0, 10) + (lines[2]![10] === 'A' ? 'B' : 'A') + lines[2]!.slice(11);
		expect(() => issueFromCsr(ca, { csrPem: lines.join('\n'), commonName: 'x', sans: ['x'], days: 1 })).toThrow(
			CsrError
		);
		expect(() => issueFromCsr(ca, { csrPem: 'garbage', commonName: 'x', sans: ['x'], days: 1 })).toThrow(
			'not a PEM certificate request'
		);
		expect(() => issueFromCsr(ca, { csrPem: ca.cert.toString(), commonName: 'x', sans: ['x'], days: 1 })).toThrow(
			CsrError
		);
	});

	it('publishes a CRL openssl accepts, and openssl then refuses the revoked certificate', async () => {
		const ca = newCa('ec');
		await writeFile(join(dir, 'crl-ca.pem'), ca.cert.toString());
		const csr = await nodeCsr('revoked', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
		const crlUrl = 'http://flotilla.example.org:8080/crl/00000000-0000-4000-8000-000000000001.crl';
		const leaf = new X509Certificate(issueFromCsr(ca, { csrPem: csr, commonName: 'r', sans: ['r'], days: 30, crlUrl }));
		await writeFile(join(dir, 'revoked.crt'), leaf.toString());
		// Relying parties find the CRL through the certificate's CRL Distribution Point.
		expect(await openssl(['x509', '-in', 'revoked.crt', '-noout', '-ext', 'crlDistributionPoints'])).toBe(
			`X509v3 CRL Distribution Points: \n    Full Name:\n      URI:${crlUrl}\n`
		);
		await writeFile(join(dir, 'empty.crl'), pem('X509 CRL', createCrl(ca, [], { number: 1n, nextUpdateDays: 7 })));
		expect(
			await openssl(['verify', '-crl_check', '-CRLfile', 'empty.crl', '-CAfile', 'crl-ca.pem', 'revoked.crt'])
		).toBe('revoked.crt: OK\n');
		await writeFile(
			join(dir, 'one.crl'),
			pem(
				'X509 CRL',
				createCrl(ca, [{ serial: leaf.serialNumber, revokedAt: new Date() }], { number: 2n, nextUpdateDays: 7 })
			)
		);
		const crl = await openssl(['crl', '-in', 'one.crl', '-CAfile', 'crl-ca.pem', '-noout', '-text']);
		expect(crl).toContain(`Serial Number: ${leaf.serialNumber.toUpperCase()}`);
		expect(crl).toMatch(/X509v3 CRL Number: \n\s+2/);
		const refused = await run(
			'openssl',
			['verify', '-crl_check', '-CRLfile', 'one.crl', '-CAfile', 'crl-ca.pem', 'revoked.crt'],
			{ cwd: dir }
		).catch((e: { stdout: string; stderr: string }) => e);
		expect(`${refused.stdout}${refused.stderr}`).toContain('certificate revoked');
	});
});
