import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { createInternalCa, issuingCa, trustAuthority, type SigningCa } from '../../src/lib/server/certs/authority';
import { crlUrl, publishedCrl } from '../../src/lib/server/certs/crl';
import { issueFromCsr } from '../../src/lib/server/certs/issue';
import { listIssued, recordIssued, revokeIssued } from '../../src/lib/server/certs/issued';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { issuedCertificates, nodes } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { GET as crlRoute } from '../../src/routes/crl/[id].crl/+server';
import { backends } from '../support/databases';

/**
 * The published CRL, as relying parties see it: the URL in an issued certificate's CRL Distribution Point,
 * fetched over HTTP from the console's route handler, judged by the real openssl before and after a revocation.
 */

const run = promisify(execFile);
let dir: string;
const openssl = async (args: string[]) => (await run('openssl', args, { cwd: dir })).stdout;
/** openssl's answer, whether it succeeded or not: `verify` exits non-zero on a revoked certificate. */
const opensslSays = (args: string[]) =>
	run('openssl', args, { cwd: dir }).then(
		(r) => `${r.stdout}${r.stderr}`,
		(e: { stdout: string; stderr: string }) => `${e.stdout}${e.stderr}`
	);

/** The console's route, served over HTTP as the console serves it: `/crl/<id>.crl`, `id` the route's parameter. */
let server: Server;
let origin: string;

beforeAll(async () => {
	dir = await mkdtemp(join(tmpdir(), 'flotilla-crl-'));
	const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
	for (const name of ['a', 'b']) {
		await openssl(['req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
	}
	await openssl([
		'req',
		'-x509',
		...ec,
		'-keyout',
		'other.key',
		'-out',
		'other.crt',
		'-days',
		'30',
		'-subj',
		'/CN=Other'
	]);
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);

	server = createServer(async (req, res) => {
		const url = new URL(req.url!, origin);
		const match = /^\/crl\/([^/]+)\.crl$/.exec(url.pathname);
		if (!match) return res.writeHead(404).end();
		const request = new Request(url, { method: req.method, headers: req.headers as Record<string, string> });
		const answer = await crlRoute({ params: { id: decodeURIComponent(match[1]!) }, request, url } as never);
		res.writeHead(answer.status, Object.fromEntries(answer.headers));
		res.end(Buffer.from(await answer.arrayBuffer()));
	});
	await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
	origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
	await new Promise((resolve) => server.close(resolve));
	await rm(dir, { recursive: true, force: true });
});

/** openssl's date (`-dateopt iso_8601`: `2026-12-08 20:00:00Z`) as a Date. */
const isoDate = (line: string) =>
	new Date(
		line
			.slice(line.indexOf('=') + 1)
			.trim()
			.replace(' ', 'T')
	);

describe.each(backends)('the published CRL on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let ca: SigningCa;
	let nodeId: string;
	let revokedSerial: string;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		await createInternalCa(systemActor, { name: 'Flotilla CA', key_type: 'ec', validity_days: 3650 });
		ca = (await issuingCa())!;
		await writeFile(join(dir, 'ca.pem'), ca.cert.toString());
		const cred = await createCredential(systemActor, {
			name: 'k',
			privateKey: await readFile(join(dir, 'id'), 'utf8')
		});
		const [node] = await db().insert(nodes).values({ name: 'n1', host: '10.0.0.9', credentialId: cred.id }).returning();
		nodeId = node!.id;
	});
	afterAll(async () => {
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	/** A certificate for the node's CSR `name`, as a rotation signs it, recorded as issued. */
	async function issue(name: string) {
		const pem = issueFromCsr(ca, {
			csrPem: await readFile(join(dir, `${name}.csr`), 'utf8'),
			commonName: name,
			sans: [name],
			days: 30,
			crlUrl: crlUrl(ca.id, origin)
		});
		await writeFile(join(dir, `${name}.crt`), pem);
		return recordIssued({ caId: ca.id, nodeId, nodeName: 'n1', role: 'web', pem, runId: nodeId });
	}

	/** Fetches the CRL a certificate names, as a relying party does, and keeps it as PEM for `openssl verify`. */
	async function fetchCrlOf(certFile: string): Promise<{ res: Response; text: string; number: bigint }> {
		const ext = await openssl(['x509', '-in', certFile, '-noout', '-ext', 'crlDistributionPoints']);
		const url = /URI:(\S+)/.exec(ext)![1]!;
		const res = await fetch(url);
		expect(res.status).toBe(200);
		await writeFile(join(dir, 'fetched.crl'), Buffer.from(await res.arrayBuffer()));
		await openssl(['crl', '-inform', 'DER', '-in', 'fetched.crl', '-outform', 'PEM', '-out', 'fetched.pem']);
		const text = await opensslSays([
			'crl',
			'-inform',
			'DER',
			'-in',
			'fetched.crl',
			'-CAfile',
			'ca.pem',
			'-noout',
			'-text'
		]);
		// openssl prints `crlNumber=0x…`.
		const number = BigInt(
			(await openssl(['crl', '-inform', 'DER', '-in', 'fetched.crl', '-noout', '-crlnumber']))
				.trim()
				.replace('crlNumber=', '')
		);
		return { res, text, number };
	}

	it('puts the console’s CRL URL for its CA in what it issues, and serves that URL to anyone as DER with cache headers from its dates', async () => {
		await issue('a');
		const text = await openssl(['x509', '-in', 'a.crt', '-noout', '-text']);
		expect(text).toContain(
			`X509v3 CRL Distribution Points: \n                Full Name:\n                  URI:${origin}/crl/${ca.id}.crl`
		);

		const { res, text: crl } = await fetchCrlOf('a.crt');
		expect(crl).toContain('verify OK');
		expect(crl).toContain('No Revoked Certificates.');
		expect(res.headers.get('content-type')).toBe('application/pkix-crl');
		const dates = await openssl([
			'crl',
			'-inform',
			'DER',
			'-in',
			'fetched.crl',
			'-noout',
			'-lastupdate',
			'-nextupdate',
			'-dateopt',
			'iso_8601'
		]);
		const [last, next] = dates.trim().split('\n').map(isoDate);
		expect(next!.getTime() - last!.getTime()).toBe(7 * 86_400_000);
		expect(res.headers.get('last-modified')).toBe(last!.toUTCString());
		expect(res.headers.get('expires')).toBe(next!.toUTCString());
		// An HTTP cache keeps it at most until the hour's re-issue: well before nextUpdate.
		const maxAge = Number(/^public, no-transform, max-age=(\d+)$/.exec(res.headers.get('cache-control')!)![1]);
		expect(maxAge).toBeGreaterThanOrEqual(0);
		expect(maxAge).toBeLessThanOrEqual(3600);

		const etag = res.headers.get('etag')!;
		const again = await fetch(`${origin}/crl/${ca.id}.crl`, { headers: { 'if-none-match': etag } });
		expect(again.status).toBe(304);
		expect(again.headers.get('etag')).toBe(etag);
	});

	it('answers 404 for a CA it holds no key of, or does not know, and 400 naming the id when it is not one', async () => {
		const trusted = await trustAuthority(systemActor, {
			name: 'Other',
			cert_pem: await readFile(join(dir, 'other.crt'), 'utf8')
		});
		for (const id of [trusted.id, '00000000-0000-4000-8000-000000000000']) {
			const res = await fetch(`${origin}/crl/${id}.crl`);
			expect(res.status, id).toBe(404);
			expect((await res.json()).error.code).toBe('not_found');
		}
		const bad = await fetch(`${origin}/crl/nope.crl`);
		expect(bad.status).toBe(400);
		expect((await bad.json()).error.fields).toEqual({ id: 'must be a UUID' });
	});

	it('lists a revoked certificate in the next CRL fetched: openssl verify -crl_check refuses it and accepts another', async () => {
		const b = await issue('b');
		const before = await fetchCrlOf('b.crt');
		for (const cert of ['a.crt', 'b.crt']) {
			expect(await openssl(['verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'fetched.pem', cert])).toBe(
				`${cert}: OK\n`
			);
		}

		await revokeIssued(systemActor, b.id, 'key compromise');
		revokedSerial = b.serial;
		const after = await fetchCrlOf('b.crt');
		expect(after.text).toContain('verify OK');
		expect(after.text).toContain(`Serial Number: ${b.serial}`);
		// A new CRL, numbered after the one before the revocation.
		expect(after.number).toBeGreaterThan(before.number);
		expect(
			await opensslSays(['verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'fetched.pem', 'b.crt'])
		).toContain('certificate revoked');
		expect(await openssl(['verify', '-crl_check', '-CAfile', 'ca.pem', '-CRLfile', 'fetched.pem', 'a.crt'])).toBe(
			'a.crt: OK\n'
		);
	});

	it('is re-issued every hour, so one fetched never nears its nextUpdate, and keeps its number within the hour', async () => {
		const hour = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000);
		const first = (await publishedCrl(ca.id, new Date(hour.getTime() + 60_000)))!;
		const same = (await publishedCrl(ca.id, new Date(hour.getTime() + 59 * 60_000)))!;
		expect(same.number).toBe(first.number);
		expect(same.der.equals(first.der)).toBe(true);
		expect(first.thisUpdate).toEqual(hour);
		expect(first.reissueAt).toEqual(new Date(hour.getTime() + 3_600_000));
		// Six days and 23 hours later (no console re-signed it meanwhile): a new CRL, a week from that hour.
		const later = new Date(hour.getTime() + 7 * 86_400_000 - 30 * 60_000);
		const next = (await publishedCrl(ca.id, later))!;
		expect(next.number).toBeGreaterThan(first.number);
		expect(next.thisUpdate.getTime()).toBe(hour.getTime() + 7 * 86_400_000 - 3_600_000);
		expect(next.nextUpdate.getTime()).toBe(next.thisUpdate.getTime() + 7 * 86_400_000);
		await writeFile(join(dir, 'later.crl'), next.der);
		const text = await opensslSays([
			'crl',
			'-inform',
			'DER',
			'-in',
			'later.crl',
			'-CAfile',
			'ca.pem',
			'-noout',
			'-text'
		]);
		expect(text).toContain('verify OK');
		expect(text).toContain(`Serial Number: ${revokedSerial}`);
	});

	it('gives a list a new, higher number even when its revocation is dated before the last CRL (a console’s clock behind)', async () => {
		const last = (await publishedCrl(ca.id))!;
		const a = (await listIssued()).find((c) => c.revokedAt === null)!;
		await revokeIssued(systemActor, a.id, 'superseded');
		await db()
			.update(issuedCertificates)
			.set({ revokedAt: new Date(last.thisUpdate.getTime() - 60_000) })
			.where(eq(issuedCertificates.id, a.id));
		const next = (await publishedCrl(ca.id))!;
		expect(next.number).toBeGreaterThan(last.number);
		await writeFile(join(dir, 'behind.crl'), next.der);
		const text = await openssl(['crl', '-inform', 'DER', '-in', 'behind.crl', '-noout', '-text']);
		expect(text).toContain(`Serial Number: ${a.serial}`);
		expect(text).toContain(`Serial Number: ${revokedSerial}`);
	});
});
