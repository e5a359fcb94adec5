import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certRoleSchema } from '../../src/lib/schemas/certificates';
import { systemActor } from '../../src/lib/server/audit';
import { listInventory } from '../../src/lib/server/certs/inventory';
import { defineCertRole } from '../../src/lib/server/certs/roles';
import { startScan } from '../../src/lib/server/certs/scan';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { cancelRun, getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { countByStatus, statusOf } from '../../src/lib/server/fleet/status';
import { freshPostgres } from '../support/databases';
import { certifyTestbedRole, registerTestbedNodes } from '../support/testbed-nodes';
import { waitFor, waitForRun } from '../support/engine';
import { hostPaths, startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * The certificate inventory on real sshd hosts (127.0.1.190–193) serving real TLS (openssl s_server) from
 * certificates made by the real openssl: what the console records must equal what openssl itself reports.
 */

const run = promisify(execFile);
const HOSTS = 4;
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const idOf = new Map<string, string>();

/** What openssl prints for a PEM file: fingerprint, subject, issuer, notAfter. */
async function opensslFacts(file: string) {
	const { stdout } = await run('openssl', [
		'x509',
		'-in',
		file,
		'-noout',
		'-fingerprint',
		'-sha256',
		'-subject',
		'-issuer',
		'-enddate',
		'-ext',
		'subjectAltName'
	]);
	const line = (prefix: string) =>
		stdout
			.split('\n')
			.find((l) => l.startsWith(prefix))!
			.slice(prefix.length);
	return {
		fingerprint: line('sha256 Fingerprint='),
		subject: line('subject='),
		issuer: line('issuer='),
		notAfter: new Date(line('notAfter=')),
		sans: stdout
			.split('\n')
			.at(stdout.split('\n').findIndex((l) => l.includes('Subject Alternative Name')) + 1)!
			.trim()
	};
}

/** What `openssl s_client` receives from the host's endpoint, as `openssl x509 -fingerprint -sha256` prints it. */
async function servedByOpenssl(host: TestHost): Promise<string> {
	const { stdout } = await run('sh', [
		'-c',
		`openssl s_client -connect ${host.address}:${host.tlsPort} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`
	]);
	return stdout.trim().replace('sha256 Fingerprint=', '');
}

const certFile = (host: TestHost) => join(host.root, hostPaths.tlsCert);

async function scanAndWait(nodeNames?: string[]) {
	const { runId } = await startScan(systemActor, nodeNames ? { nodes: nodeNames } : {});
	return waitForRun(runId, ['succeeded', 'failed'], 60_000);
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: HOSTS, firstHost: 190, roles: [] });
	pg = await freshPostgres('flotilla_certs');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	const rows = await registerTestbedNodes(bed, (_, i) => ({ roles: ['web'], controlPlane: i === 0 }));
	for (const r of rows) idOf.set(r.name, r.id);
	await certifyTestbedRole(bed);
	await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('certificate inventory on real hosts', () => {
	it('records per host the file and the endpoint, exactly as openssl x509 and openssl s_client report them', async () => {
		const done = await scanAndWait();
		expect(done.state).toBe('succeeded');
		const items = await listInventory();
		expect(items).toHaveLength(HOSTS * 2);
		for (const host of bed.hosts) {
			const file = items.find((i) => i.node === host.name && i.source === 'file')!;
			const endpoint = items.find((i) => i.node === host.name && i.source === 'endpoint')!;
			const openssl = await opensslFacts(certFile(host));
			expect(file).toMatchObject({
				location: hostPaths.tlsCert,
				role: 'web',
				fingerprint_sha256: openssl.fingerprint,
				subject: openssl.subject,
				issuer: openssl.issuer,
				not_after: openssl.notAfter,
				sans: openssl.sans.split(', '),
				key_type: 'ec',
				key_bits: 256,
				self_signed: false,
				chain_verified: true,
				chain_error: null,
				mismatch: false,
				error: null
			});
			expect(endpoint.location).toBe(`${host.address}:8443`);
			expect(endpoint.fingerprint_sha256).toBe(await servedByOpenssl(host));
			expect(endpoint.fingerprint_sha256).toBe(openssl.fingerprint);
			expect(endpoint.chain_verified).toBe(true);
			// The testbed issues for 90 days: 89 whole days and some hours are left.
			expect(file.days_left).toBe(89);
			expect(file.level).toBe('ok');
		}
		expect((await countByStatus()).UP_TO_DATE).toBe(HOSTS);
		const audits = await db().select().from(auditLog).where(eq(auditLog.action, 'run.create'));
		expect(audits.length).toBeGreaterThan(0);
	});

	it('refuses a scan of an unknown node, or of nodes without a certificate role, naming the field', async () => {
		await expect(startScan(systemActor, { nodes: ['nope'] })).rejects.toMatchObject({
			status: 400,
			fields: { nodes: 'no node nope' }
		});
		await db().update(nodes).set({ roles: [] });
		try {
			await expect(startScan(systemActor, {})).rejects.toMatchObject({
				status: 409,
				fields: { nodes: 'no node with a certificate role' }
			});
		} finally {
			await db()
				.update(nodes)
				.set({ roles: ['web'] });
		}
	});

	it('flags a file that differs from what the endpoint serves (a rotation never reloaded)', async () => {
		const host = bed.hosts[1]!;
		const fresh = await bed.issueCertificate(host, 20);
		await writeFile(certFile(host), fresh.cert);
		await writeFile(join(host.root, hostPaths.tlsKey), fresh.key, { mode: 0o600 });
		await scanAndWait([host.name]);
		const items = (await listInventory()).filter((i) => i.node === host.name);
		const file = items.find((i) => i.source === 'file')!;
		const endpoint = items.find((i) => i.source === 'endpoint')!;
		expect(file).toMatchObject({
			fingerprint_sha256: fresh.fingerprint,
			mismatch: true,
			days_left: 19,
			level: 'warning'
		});
		expect(endpoint.mismatch).toBe(true);
		expect(endpoint.fingerprint_sha256).toBe(await servedByOpenssl(host));
		expect(endpoint.fingerprint_sha256).not.toBe(fresh.fingerprint);
		// Under 30 days: the node shows as expiring on the Fleet Overview.
		expect(await statusOf(idOf.get(host.name)!)).toBe('CERT_EXPIRING');
	});

	it('a self-signed or untrusted certificate is recorded as such, with why its chain does not verify', async () => {
		const host = bed.hosts[2]!;
		const dir = join(bed.dir, 'selfsigned');
		await run('mkdir', ['-p', dir]);
		await run('openssl', [
			'req',
			'-x509',
			'-newkey',
			'rsa:2048',
			'-nodes',
			'-keyout',
			join(dir, 'k.pem'),
			'-out',
			join(dir, 'c.pem'),
			'-days',
			'1',
			'-subj',
			`/CN=${host.name}`
		]);
		await writeFile(certFile(host), await readFile(join(dir, 'c.pem')));
		await scanAndWait([host.name]);
		const file = (await listInventory()).find((i) => i.node === host.name && i.source === 'file')!;
		expect(file).toMatchObject({
			self_signed: true,
			chain_verified: false,
			chain_error: 'self-signed, and not one of the trusted CAs',
			key_type: 'rsa',
			key_bits: 2048,
			days_left: 0,
			level: 'critical'
		});
	});

	it('an endpoint that refuses, and one that accepts but never handshakes, are recorded as errors; the scan still succeeds', async () => {
		const host = bed.hosts[3]!;
		// Something that accepts TCP on the host's address and never says a word.
		const silent: Server = createServer(() => {});
		await new Promise<void>((r) => silent.listen(8446, host.address, r));
		try {
			await defineCertRole(
				systemActor,
				certRoleSchema.parse({
					role: 'edge',
					cert_path: hostPaths.tlsCert,
					key_path: hostPaths.tlsKey,
					endpoints: [{ port: 8445 }, { port: 8446 }],
					reload_command: ['systemctl', 'reload', hostPaths.tlsUnit]
				})
			);
			await db()
				.update(nodes)
				.set({ roles: ['web', 'edge'] })
				.where(eq(nodes.id, idOf.get(host.name)!));
			const done = await scanAndWait([host.name]);
			expect(done.state).toBe('succeeded');
			const items = (await listInventory()).filter((i) => i.node === host.name && i.role === 'edge');
			const refused = items.find((i) => i.location === `${host.address}:8445`)!;
			const hung = items.find((i) => i.location === `${host.address}:8446`)!;
			expect(refused).toMatchObject({ error: expect.stringContaining('ECONNREFUSED'), fingerprint_sha256: null });
			expect(hung.error).toBe(`no TLS handshake with ${host.address}:8446 within 10 s`);
		} finally {
			silent.close();
			await db()
				.update(nodes)
				.set({ roles: ['web'] })
				.where(eq(nodes.id, idOf.get(host.name)!));
		}
		// The role left the node: the next scan drops its rows.
		await scanAndWait([host.name]);
		expect((await listInventory()).filter((i) => i.node === host.name).map((i) => i.role)).toEqual(['web', 'web']);
	});

	it('a cancel during a hung handshake ends the task at once, cancelled', async () => {
		const host = bed.hosts[3]!;
		const silent: Server = createServer(() => {});
		await new Promise<void>((r) => silent.listen(8447, host.address, r));
		try {
			await defineCertRole(
				systemActor,
				certRoleSchema.parse({
					role: 'hung',
					cert_path: hostPaths.tlsCert,
					key_path: hostPaths.tlsKey,
					endpoints: [{ port: 8447 }],
					reload_command: ['true']
				})
			);
			await db()
				.update(nodes)
				.set({ roles: ['hung'] })
				.where(eq(nodes.id, idOf.get(host.name)!));
			const { runId } = await startScan(systemActor, { nodes: [host.name] });
			await waitFor('the endpoints step', async () => {
				const r = await getRun(runId);
				return r.tasks[0]?.steps.some((s) => s.name === 'endpoints' && s.state === 'running');
			});
			await cancelRun(systemActor, runId);
			const done = await waitForRun(runId, ['cancelled'], 8_000);
			expect(done.tasks[0]!.state).toBe('cancelled');
			// The hung endpoint was never recorded: a cancelled scan writes nothing.
			expect((await listInventory()).some((i) => i.role === 'hung')).toBe(false);
		} finally {
			silent.close();
			await db()
				.update(nodes)
				.set({ roles: ['web'] })
				.where(eq(nodes.id, idOf.get(host.name)!));
		}
	});

	it('a certificate file that never finishes reading hits its deadline; nothing is left running on the host', async () => {
		const host = bed.hosts[0]!;
		await run('mkfifo', [join(host.root, 'etc/flotilla/tls/hang.crt')]);
		await defineCertRole(
			systemActor,
			certRoleSchema.parse({
				role: 'fifo',
				cert_path: '/etc/flotilla/tls/hang.crt',
				key_path: hostPaths.tlsKey,
				endpoints: [],
				reload_command: ['true']
			})
		);
		await db()
			.update(nodes)
			.set({ roles: ['web', 'fifo'] })
			.where(eq(nodes.id, idOf.get(host.name)!));
		try {
			const done = await scanAndWait([host.name]);
			expect(done.state).toBe('succeeded');
			const fifo = (await listInventory()).find((i) => i.node === host.name && i.role === 'fifo')!;
			expect(fifo.error).toMatch(/could not read \/etc\/flotilla\/tls\/hang\.crt: timed out after 10 s/);
			// No `cat` of the FIFO survives on the host (its processes are visible in the real /proc).
			const left: string[] = [];
			for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
				const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
				if (cmd.replaceAll('\0', ' ').startsWith('cat -- /etc/flotilla/tls/hang.crt')) left.push(pid);
			}
			expect(left).toEqual([]);
		} finally {
			await db()
				.update(nodes)
				.set({ roles: ['web'] })
				.where(eq(nodes.id, idOf.get(host.name)!));
		}
		const rows = await db()
			.select()
			.from(auditLog)
			.where(and(eq(auditLog.action, 'certificates.role_defined')));
		expect(rows.map((r) => r.targetId)).toEqual(expect.arrayContaining(['web', 'edge', 'hung', 'fifo']));
	});
});
