import { createPrivateKey, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { csrPublicKey } from '$lib/server/certs/issue';
import { sh } from '$lib/server/ssh/shell';
import { issueSimCertificate, newCertificateAuthority, newSimCertificateRequest } from './certificates';
import { newHostModel, runCommandLine, type CommandIO } from './host';

/** The commands a certificate rotation sends (certs/rotate.ts), as the simulator answers them. */
const run = async (model: ReturnType<typeof newHostModel>, script: string) => {
	const err: string[] = [];
	const io = { out: async () => {}, err: async (l: string) => void err.push(l) } as unknown as CommandIO;
	return { status: await runCommandLine(model, script, io), err };
};

describe('the simulator and a rotation', () => {
	it('openssl req makes a key and a request signed by it; the key never leaves the model', async () => {
		const m = newHostModel('sim-1');
		const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
		const r = await run(
			m,
			sh`umask 077 && openssl req -new ${key} -keyout ${'/t/k.new'} -out ${'/t/c.csr'} -subj ${'/CN=sim-1'}`.script
		);
		expect(r).toEqual({ status: 0, err: [] });
		const spki = csrPublicKey(m.files.get('/t/c.csr')!);
		const fromKey = createPublicKey(createPrivateKey(m.files.get('/t/k.new')!)).export({ type: 'spki', format: 'der' });
		expect(Buffer.compare(spki, fromKey)).toBe(0);
		// Any other request (self-signed, RSA) fails loudly instead of passing with made-up files.
		const other = await run(
			m,
			sh`openssl req -x509 -newkey rsa:2048 -nodes -keyout ${'/t/x'} -out ${'/t/y'} -subj ${'/CN=x'}`.script
		);
		expect(other.status).toBe(1);
		expect(m.files.has('/t/x')).toBe(false);
	});

	it('printf > file writes the file; cp, mv and rm move files as a shell would', async () => {
		const m = newHostModel('sim-1');
		expect(
			(
				await run(
					m,
					sh`printf '%s' ${'-----BEGIN X-----\nAA\n-----END X-----\n'} > ${'/t/a'} && cp -p -- ${'/t/a'} ${'/t/b'}`
						.script
				)
			).status
		).toBe(0);
		expect(m.files.get('/t/a')).toBe('-----BEGIN X-----\nAA\n-----END X-----\n');
		expect(m.files.get('/t/b')).toBe(m.files.get('/t/a'));
		expect((await run(m, sh`mv -f -- ${'/t/b'} ${'/t/c'} && rm -f -- ${'/t/a'} ${'/t/none'}`.script)).status).toBe(0);
		expect([...m.files.keys()].filter((f) => f.startsWith('/t/'))).toEqual(['/t/c']);
		expect((await run(m, sh`cp -p -- ${'/t/none'} ${'/t/d'}`.script)).status).toBe(1);
		expect((await run(m, sh`rm -- ${'/t/none'}`.script)).status).toBe(1);
	});

	it('openssl x509 -pubkey and openssl pkey -pubout print the same key for a pair, different ones otherwise', async () => {
		const m = newHostModel('sim-1');
		const lines: string[] = [];
		const io = { out: async (l: string) => void lines.push(l), err: async () => {} } as unknown as CommandIO;
		const print = async (script: string) => {
			lines.length = 0;
			const status = await runCommandLine(m, script, io);
			return { status, text: lines.join('\n') };
		};
		const pair = issueSimCertificate(newCertificateAuthority('Sim CA'), {
			commonName: 'sim-1',
			altNames: ['sim-1'],
			notBefore: new Date('2026-01-01T00:00:00Z'),
			notAfter: new Date('2027-01-01T00:00:00Z')
		});
		m.files.set('/t/c.crt', pair.cert);
		m.files.set('/t/c.key', pair.key);
		m.files.set('/t/other.key', newSimCertificateRequest('sim-1').key);
		const fromCert = await print(sh`openssl x509 -noout -pubkey -in ${'/t/c.crt'}`.script);
		const fromKey = await print(sh`openssl pkey -pubout -in ${'/t/c.key'}`.script);
		const fromOther = await print(sh`openssl pkey -pubout -in ${'/t/other.key'}`.script);
		expect([fromCert.status, fromKey.status, fromOther.status]).toEqual([0, 0, 0]);
		expect(fromCert.text).toBe(
			(createPublicKey(createPrivateKey(pair.key)).export({ type: 'spki', format: 'pem' }) as string).trimEnd()
		);
		expect(fromKey.text).toBe(fromCert.text);
		expect(fromOther.text).not.toBe(fromCert.text);
		expect((await print(sh`openssl pkey -pubout -in ${'/t/none'}`.script)).status).toBe(1);
	});
});
