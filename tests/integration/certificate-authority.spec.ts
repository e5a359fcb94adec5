import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { issuingCa } from '../../src/lib/server/certs/authority';
import { issueFromCsr } from '../../src/lib/server/certs/issue';
import { recordIssued } from '../../src/lib/server/certs/issued';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { auditLog, certAuthorities, nodes } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { POST as createCa, GET as listCas } from '../../src/routes/api/security/certificates/ca/+server';
import { POST as importCa } from '../../src/routes/api/security/certificates/ca/import/+server';
import { POST as trustCa } from '../../src/routes/api/security/certificates/ca/trust/+server';
import { GET as crl } from '../../src/routes/api/security/certificates/crl/+server';
import { GET as issued } from '../../src/routes/api/security/certificates/issued/+server';
import { POST as revoke } from '../../src/routes/api/security/certificates/issued/[id]/revoke/+server';
import { backends } from '../support/databases';

/** The internal CA through its API: create or import (key sealed, never shown), trust, issued inventory, revoke, CRL. */

const run = promisify(execFile);
let dir: string;
const openssl = async (args: string[]) => (await run('openssl', args, { cwd: dir })).stdout;

type Handler = (event: never) => Promise<Response>;
function call(handler: Handler, body?: unknown, opts: { params?: Record<string, string>; query?: string } = {}) {
	const url = new URL(`http://console/api/x${opts.query ?? ''}`);
	const request = new Request(url, {
		method: body === undefined ? 'GET' : 'POST',
		...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
	});
	return handler({ request, url, params: opts.params ?? {}, locals: {}, getClientAddress: () => '127.0.0.1' } as never);
}

beforeAll(async () => {
	dir = await mkdtemp(join(tmpdir(), 'flotilla-ca-'));
	const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
	await openssl([
		'req',
		'-x509',
		...ec,
		'-keyout',
		'ext-ca.key',
		'-out',
		'ext-ca.crt',
		'-days',
		'365',
		'-subj',
		'/CN=Imported CA'
	]);
	await openssl([
		'req',
		'-x509',
		...ec,
		'-keyout',
		'other.key',
		'-out',
		'other.crt',
		'-days',
		'365',
		'-subj',
		'/CN=Other CA'
	]);
	await openssl(['req', '-new', ...ec, '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=n1']);
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
	await openssl([
		'req',
		'-x509',
		...ec,
		'-keyout',
		'leaf.key',
		'-out',
		'leaf.crt',
		'-days',
		'5',
		'-subj',
		'/CN=leaf',
		'-addext',
		'basicConstraints=critical,CA:FALSE'
	]);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const read = (f: string) => readFile(join(dir, f), 'utf8');

describe.each(backends)('the internal CA on $name', ({ open }) => {
	let handle: DatabaseHandle;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
	});
	afterAll(async () => {
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	it('refuses an import whose key is not the certificate’s, a non-CA, and garbage, naming the field and echoing no key', async () => {
		const wrongKey = await read('other.key');
		let res = await call(importCa as Handler, { name: 'x', cert_pem: await read('ext-ca.crt'), key_pem: wrongKey });
		expect(res.status).toBe(400);
		const body = await res.text();
		expect(JSON.parse(body).error.fields).toEqual({ key_pem: 'is not the key of cert_pem' });
		expect(body).not.toContain(wrongKey.split('\n')[2]);
		res = await call(importCa as Handler, { name: 'x', cert_pem: await read('ext-ca.crt'), key_pem: 'nope' });
		expect((await res.json()).error.fields).toEqual({ key_pem: 'is not an unencrypted PEM private key' });
		res = await call(trustCa as Handler, { name: 'leaf', cert_pem: await read('leaf.crt') });
		expect((await res.json()).error.fields).toEqual({ cert_pem: 'is not a CA (basicConstraints CA:TRUE)' });
		res = await call(trustCa as Handler, { name: 'junk', cert_pem: 'junk' });
		expect((await res.json()).error.fields).toEqual({ cert_pem: 'is not a PEM certificate' });
		expect(await db().select().from(certAuthorities)).toEqual([]);
	});

	it('imports a CA with its key sealed (the key is in no column in the clear), and refuses a second issuing CA', async () => {
		const key = await read('ext-ca.key');
		const res = await call(importCa as Handler, { name: 'Imported', cert_pem: await read('ext-ca.crt'), key_pem: key });
		expect(res.status).toBe(201);
		const answer = await res.json();
		expect(answer).toMatchObject({ name: 'Imported', issuing: true, has_key: true });
		expect(JSON.stringify(answer)).not.toContain(key.split('\n')[2]);
		const [row] = await db().select().from(certAuthorities);
		expect(row!.sealedKey).toMatch(/^v1\./);
		expect(JSON.stringify(row)).not.toContain(key.split('\n')[2]);
		expect((await issuingCa())!.key.export({ type: 'pkcs8', format: 'pem' })).toBe(key);
		const again = await call(createCa as Handler, { name: 'Second' });
		expect(again.status).toBe(409);
		expect((await again.json()).error.fields).toEqual({ name: 'an internal CA exists already' });
		const trusted = await call(trustCa as Handler, { name: 'Other', cert_pem: await read('other.crt') });
		expect(trusted.status).toBe(201);
		const list = await (await call(listCas as Handler)).json();
		expect(list.items.map((c: { name: string; has_key: boolean }) => [c.name, c.has_key])).toEqual([
			['Imported', true],
			['Other', false]
		]);
		const audits = await db().select({ action: auditLog.action }).from(auditLog);
		expect(audits.map((a) => a.action)).toEqual(
			expect.arrayContaining(['certificates.ca_imported', 'certificates.ca_trusted'])
		);
	});

	it('lists what it issued as JSON and CSV, revokes once (a second time is a 409), and the CRL lists it for openssl', async () => {
		const cred = await createCredential(systemActor, { name: 'k', privateKey: await read('id') });
		const [node] = await db().insert(nodes).values({ name: 'n1', host: '10.0.0.9', credentialId: cred.id }).returning();
		const ca = (await issuingCa())!;
		const pem = issueFromCsr(ca, {
			csrPem: await read('node.csr'),
			commonName: 'n1',
			sans: ['n1', '10.0.0.9'],
			days: 30
		});
		const row = await recordIssued({
			caId: ca.id,
			nodeId: node!.id,
			nodeName: 'n1',
			role: '=cmd()',
			pem,
			runId: node!.id
		});
		const json = await (await call(issued as Handler)).json();
		expect(json.items).toHaveLength(1);
		expect(json.items[0]).toMatchObject({
			node: 'n1',
			serial: row.serial,
			sans: ['DNS:n1', 'IP Address:10.0.0.9'],
			revoked_at: null
		});
		const csv = await (await call(issued as Handler, undefined, { query: '?format=csv' })).text();
		const [header, line] = csv.trim().split('\r\n');
		expect(header).toBe(
			'serial,node,role,subject,sans,fingerprint_sha256,not_before,not_after,revoked_at,revoke_reason,issued_at'
		);
		// A value a spreadsheet would run as a formula is defused.
		expect(line).toContain(`${row.serial},n1,'=cmd(),CN=n1,DNS:n1 IP Address:10.0.0.9,${row.fingerprint}`);
		expect((await call(issued as Handler, undefined, { query: '?format=xml' })).status).toBe(400);

		const first = await call(revoke as Handler, { reason: 'key compromise' }, { params: { id: row.id } });
		expect(first.status).toBe(200);
		expect((await first.json()).revoke_reason).toBe('key compromise');
		const second = await call(revoke as Handler, {}, { params: { id: row.id } });
		expect(second.status).toBe(409);
		expect((await call(revoke as Handler, {}, { params: { id: 'nope' } })).status).toBe(400);
		expect((await call(revoke as Handler, {}, { params: { id: '00000000-0000-4000-8000-000000000000' } })).status).toBe(
			404
		);

		await writeFile(join(dir, 'published.crl'), await (await call(crl as Handler)).text());
		await writeFile(join(dir, 'issued.crt'), pem);
		const text = await openssl(['crl', '-in', 'published.crl', '-CAfile', 'ext-ca.crt', '-noout', '-text']);
		expect(text).toContain(`Serial Number: ${row.serial}`);
		const refused = await run(
			'openssl',
			['verify', '-crl_check', '-CRLfile', 'published.crl', '-CAfile', 'ext-ca.crt', 'issued.crt'],
			{ cwd: dir }
		).catch((e: { stdout: string; stderr: string }) => e);
		expect(`${refused.stdout}${refused.stderr}`).toContain('certificate revoked');
		const audits = await db().select().from(auditLog).where(eq(auditLog.action, 'certificates.revoke'));
		expect(audits).toHaveLength(1);
	});
});
