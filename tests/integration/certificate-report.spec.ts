import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { trustAuthority } from '../../src/lib/server/certs/authority';
import { listInventory, observe, recordObservations } from '../../src/lib/server/certs/inventory';
import { certStatusParts } from '../../src/lib/server/certs/status';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { registerStatusPart, statusOf } from '../../src/lib/server/fleet/status';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { log } from '../../src/lib/server/log';
import { POST as report } from '../../src/routes/api/security/certificates/report/+server';
import { backends } from '../support/databases';

/**
 * `POST /api/security/certificates/report` with certificates made by the real openssl: a good report is
 * recorded; every bad one is a 4xx naming the field, and leaves nothing behind — a private key sent by
 * mistake least of all (the database, the audit log and the console's log are searched for it).
 */

const run = promisify(execFile);
let dir: string;
let caPem: string;
let leafPem: string;
let keyPem: string;
let renewedPem: string;
let criticalPem: string;
/** The SSH credential the node row needs. */
let sshKey: string;

async function openssl(args: string[]) {
	await run('openssl', args, { cwd: dir });
}

beforeAll(async () => {
	dir = await mkdtemp(join(tmpdir(), 'flotilla-report-'));
	const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
	await openssl([
		'req',
		'-x509',
		...ec,
		'-keyout',
		'ca.key',
		'-out',
		'ca.crt',
		'-days',
		'365',
		'-subj',
		'/CN=Report CA'
	]);
	// web-1's certificate, signed by the CA with a key of its own, valid `days` days: `<name>.crt`, `<name>.key`.
	const issue = (name: string, days: number) =>
		openssl([
			'req',
			'-x509',
			'-CA',
			'ca.crt',
			'-CAkey',
			'ca.key',
			...ec,
			'-keyout',
			`${name}.key`,
			'-out',
			`${name}.crt`,
			'-days',
			String(days),
			'-subj',
			'/CN=web-1',
			'-addext',
			'subjectAltName=DNS:web-1,IP:10.0.0.1'
		]);
	await issue('leaf', 10);
	// The same node's certificate renewed: a new key, 90 days.
	await issue('renewed', 90);
	// Another of its certificates, 5 days from expiry: under the critical threshold (7 days).
	await issue('critical', 5);
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
	const read = (f: string) => readFile(join(dir, f), 'utf8');
	[caPem, leafPem, keyPem, sshKey] = [
		await read('ca.crt'),
		await read('leaf.crt'),
		await read('leaf.key'),
		await read('id')
	];
	renewedPem = await read('renewed.crt');
	criticalPem = await read('critical.crt');
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function post(body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
	const request = new Request('http://console/api/security/certificates/report', {
		method: 'POST',
		headers,
		body: typeof body === 'string' ? body : JSON.stringify(body)
	});
	return report({ request, locals: {}, getClientAddress: () => '127.0.0.1', url: new URL(request.url) } as never);
}

/** The body of the key without its armour: what would be found if any of it had been kept. */
const keyBody = () =>
	keyPem
		.split('\n')
		.filter((l) => l && !l.startsWith('-----'))
		.join('');

describe.each(backends)('certificate reports on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let nodeId: string;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		for (const part of certStatusParts) registerStatusPart(part);
		const cred = await createCredential(systemActor, { name: 'k', privateKey: sshKey });
		const [row] = await db()
			.insert(nodes)
			.values({ name: 'web-1', host: '10.0.0.1', credentialId: cred.id })
			.returning({ id: nodes.id });
		nodeId = row!.id;
	});

	afterAll(async () => {
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	async function refused(body: unknown, status: number, fields: Record<string, unknown>) {
		const before = await listInventory();
		const res = await post(body);
		expect(res.status).toBe(status);
		const answer = await res.json();
		expect(answer.error.fields).toMatchObject(fields);
		expect(await listInventory()).toEqual(before);
		return answer;
	}

	it('refuses garbage, a non-certificate PEM, an unknown node, and path with endpoint, naming the field', async () => {
		await refused({ node: 'web-1', certificates: [{ path: '/etc/x.crt', pem: 'hello' }] }, 400, {
			'certificates.0.pem': 'is not a PEM certificate (-----BEGIN CERTIFICATE-----)'
		});
		const broken = leafPem.replace(/\n[A-Za-z0-9+/]{20}/, '\nAAAAAAAAAAAAAAAAAAAA');
		await refused(
			{
				node: 'web-1',
				certificates: [
					{ path: '/a', pem: leafPem },
					{ path: '/b', pem: broken }
				]
			},
			400,
			{ 'certificates.1.pem': 'certificate 1 is not a valid X.509 certificate' }
		);
		await refused({ node: 'web-1', certificates: [{ path: '/a', pem: `${leafPem}trailing words\n` }] }, 400, {
			'certificates.0.pem': 'holds something besides PEM certificates'
		});
		await refused({ node: 'nope', certificates: [{ path: '/a', pem: leafPem }] }, 400, { node: 'no node nope' });
		await refused({ node: 'web-1', certificates: [{ path: '/a', endpoint: 'web-1:443', pem: leafPem }] }, 400, {
			'certificates.0.path': 'give exactly one of path or endpoint'
		});
		await refused({ node: 'web-1', certificates: [{ path: 'relative.crt', pem: leafPem }] }, 400, {
			'certificates.0.path': 'must be an absolute path'
		});
		await refused({ node: 'web-1', certificates: [] }, 400, { certificates: 'must hold at least one certificate' });
		await refused({ node: 'web-1', certificates: [{ path: '/a', pem: leafPem }], extra: 1 }, 400, {});
	});

	it('refuses a huge certificate (400) and a huge body (413) before parsing it', async () => {
		await refused({ node: 'web-1', certificates: [{ path: '/a', pem: 'A'.repeat(70_000) }] }, 400, {
			'certificates.0.pem': 'must be at most 65536 bytes'
		});
		const many = Array.from({ length: 5 }, (_, i) => ({ path: `/c${i}`, pem: 'A'.repeat(60_000) }));
		await refused({ node: 'web-1', certificates: many }, 413, { body: 'must be at most 262144 bytes' });
		const res = await post('{}', { 'content-type': 'text/plain' });
		expect(res.status).toBe(415);
	});

	it('refuses a private key sent by mistake, alone or beside the certificate, and keeps no trace of it', async () => {
		const logged: string[] = [];
		const spies = (['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const).map((level) =>
			vi.spyOn(log, level).mockImplementation(((...args: unknown[]) => {
				logged.push(JSON.stringify(args));
			}) as never)
		);
		try {
			const alone = await refused({ node: 'web-1', certificates: [{ path: '/etc/tls/key.pem', pem: keyPem }] }, 400, {
				'certificates.0.pem': 'holds a private key: send only the certificate (nothing of this report was stored)'
			});
			expect(alone.error.message).toBe('A private key was sent: nothing was stored');
			await refused({ node: 'web-1', certificates: [{ path: '/etc/tls/both.pem', pem: `${leafPem}${keyPem}` }] }, 400, {
				'certificates.0.pem': expect.stringMatching(/^holds a private key/)
			});
			expect(JSON.stringify(alone)).not.toContain(keyBody().slice(0, 40));
		} finally {
			for (const s of spies) s.mockRestore();
		}
		const body = keyBody();
		expect(logged.join('\n')).not.toContain(body.slice(0, 40));
		// Every text column of every table, searched for any 40 characters of the key.
		const found = await db().execute(sql`
			select table_name, column_name from information_schema.columns
			where table_schema = 'public' and data_type in ('text', 'jsonb')`);
		const rows = (Array.isArray(found) ? found : (found as { rows: unknown[] }).rows) as {
			table_name: string;
			column_name: string;
		}[];
		expect(rows.length).toBeGreaterThan(10);
		for (const { table_name, column_name } of rows) {
			const hits = await db().execute(
				sql`select 1 from ${sql.identifier(table_name)} where ${sql.identifier(column_name)}::text like ${`%${body.slice(0, 40)}%`}`
			);
			const n = Array.isArray(hits) ? hits.length : (hits as { rows: unknown[] }).rows.length;
			expect(n, `${table_name}.${column_name}`).toBe(0);
		}
	});

	it('records a good report with its chain judged against the trusted CAs, audits it, and the node shows as expiring', async () => {
		await trustAuthority(systemActor, { name: 'Report CA', cert_pem: caPem });
		const res = await post({
			node: 'web-1',
			certificates: [
				{ path: '/etc/tls/web.crt', pem: `${leafPem}${caPem}` },
				{ endpoint: 'web-1:443', pem: leafPem }
			]
		});
		expect(res.status).toBe(201);
		expect(await res.json()).toEqual({ node: 'web-1', recorded: 2 });
		const items = await listInventory();
		expect(items.map((i) => [i.source, i.location, i.chain_verified, i.days_left, i.level])).toEqual([
			['report', '/etc/tls/web.crt', true, 9, 'warning'],
			['report', 'web-1:443', true, 9, 'warning']
		]);
		expect(items[0]!.sans).toEqual(['DNS:web-1', 'IP Address:10.0.0.1']);
		expect(await statusOf(nodeId)).toBe('CERT_EXPIRING');
		const audits = await db().execute(sql`select action, details from audit_log where action = 'certificates.report'`);
		const list = (Array.isArray(audits) ? audits : (audits as { rows: unknown[] }).rows) as { details: unknown }[];
		expect(list).toHaveLength(1);
	});

	it('a re-report of a renewed certificate at the same location replaces the earlier row: the node is no longer expiring', async () => {
		expect(await statusOf(nodeId)).toBe('CERT_EXPIRING');
		const renewed = new X509Certificate(renewedPem);
		const res = await post({
			node: 'web-1',
			certificates: [
				{ path: '/etc/tls/web.crt', pem: `${renewedPem}${caPem}` },
				{ endpoint: 'web-1:443', pem: renewedPem }
			]
		});
		expect(res.status).toBe(201);
		const items = await listInventory();
		expect(items.map((i) => [i.source, i.location, i.fingerprint_sha256, i.days_left, i.level])).toEqual([
			['report', '/etc/tls/web.crt', renewed.fingerprint256, 89, 'ok'],
			['report', 'web-1:443', renewed.fingerprint256, 89, 'ok']
		]);
		expect(await statusOf(nodeId)).not.toBe('CERT_EXPIRING');
	});

	it('the console reading the reported location itself (a scan, a rotation) replaces the report there', async () => {
		// The node reports its expiring certificate again; then the console reads that file, renewed (as the record
		// step of a scan or a rotation writes it).
		expect((await post({ node: 'web-1', certificates: [{ path: '/etc/tls/web.crt', pem: leafPem }] })).status).toBe(
			201
		);
		expect(await statusOf(nodeId)).toBe('CERT_EXPIRING');
		const renewed = new X509Certificate(renewedPem);
		await recordObservations(
			nodeId,
			[
				{ source: 'file', location: '/etc/tls/web.crt', role: 'web', facts: observe(renewedPem, []) },
				{ source: 'endpoint', location: '10.0.0.1:443', role: 'web', error: 'connection refused' }
			],
			['file', 'endpoint']
		);
		const items = await listInventory();
		expect(items.map((i) => [i.source, i.location, i.fingerprint_sha256])).toEqual([
			['endpoint', '10.0.0.1:443', null],
			['file', '/etc/tls/web.crt', renewed.fingerprint256],
			['report', 'web-1:443', renewed.fingerprint256]
		]);
		expect(await statusOf(nodeId)).not.toBe('CERT_EXPIRING');
	});

	it('a certificate under the critical threshold makes the node CERT_CRITICAL, ahead of expiring; renewed, neither', async () => {
		const path = '/etc/tls/api.crt';
		expect((await post({ node: 'web-1', certificates: [{ path, pem: criticalPem }] })).status).toBe(201);
		const critical = (await listInventory()).find((i) => i.location === path)!;
		expect([critical.days_left, critical.level]).toEqual([4, 'critical']);
		expect(await statusOf(nodeId)).toBe('CERT_CRITICAL');
		// An expiring certificate on the same node does not hide the critical one.
		expect((await post({ node: 'web-1', certificates: [{ path: '/etc/tls/web.crt', pem: leafPem }] })).status).toBe(
			201
		);
		expect(await statusOf(nodeId)).toBe('CERT_CRITICAL');
		expect((await post({ node: 'web-1', certificates: [{ path, pem: renewedPem }] })).status).toBe(201);
		expect(await statusOf(nodeId)).toBe('CERT_EXPIRING');
		expect((await post({ node: 'web-1', certificates: [{ path: '/etc/tls/web.crt', pem: renewedPem }] })).status).toBe(
			201
		);
		expect(await statusOf(nodeId)).not.toMatch(/^CERT_/);
	});
});
