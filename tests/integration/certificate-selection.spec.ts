import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { certRoleSchema, createCaSchema } from '../../src/lib/schemas/certificates';
import { systemActor } from '../../src/lib/server/audit';
import { createInternalCa } from '../../src/lib/server/certs/authority';
import { currentCrlPem } from '../../src/lib/server/certs/crl';
import { handshake } from '../../src/lib/server/certs/handshake';
import { listInventory } from '../../src/lib/server/certs/inventory';
import { listIssued, revokeIssued } from '../../src/lib/server/certs/issued';
import { planRotation, startRotation } from '../../src/lib/server/certs/plan';
import { defineCertRole } from '../../src/lib/server/certs/roles';
import { runScheduledScan, startScan } from '../../src/lib/server/certs/scan';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { certifyTestbedRole, registerTestbedNodes } from '../support/testbed-nodes';
import { hostPaths, startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Which endpoints and nodes the certificate flows pick, on real sshd hosts (127.0.1.63–65) serving real TLS:
 * an endpoint per SNI name on one port (virtual hosts, served by a real `openssl s_server`), the rotation of
 * "all expiring under N days", and the scheduled scan's choice of nodes (127.0.1.9 and .59 are nodes that
 * must not be contacted).
 */

const run = promisify(execFile);
const SNI_PORT = 8450;
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let sniServer: ChildProcess | undefined;
let caPem = '';
const idOf = new Map<string, string>();

const served = async (host: TestHost) => (await bed.servedCertificate(host)).fingerprint;

/** What `openssl s_client` receives from `address:port`, with the given SNI name or none. */
async function servedByOpenssl(address: string, port: number, servername: string | null): Promise<string> {
	const sni = servername ? `-servername ${servername}` : '-noservername';
	const { stdout } = await run('sh', [
		'-c',
		`openssl s_client -connect ${address}:${port} ${sni} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`
	]);
	return stdout.trim().replace('sha256 Fingerprint=', '');
}

async function scanAndWait(nodeNames: string[]) {
	const { runId } = await startScan(systemActor, { nodes: nodeNames });
	return waitForRun(runId, ['succeeded', 'failed'], 60_000);
}

const setRoles = (name: string, roles: string[]) =>
	db()
		.update(nodes)
		.set({ roles })
		.where(eq(nodes.id, idOf.get(name)!));

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 63, roles: [] });
	pg = await freshPostgres('flotilla_certsel');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	const rows = await registerTestbedNodes(bed, () => ({ roles: ['web'] }));
	for (const r of rows) idOf.set(r.name, r.id);
	await certifyTestbedRole(bed, { validity_days: 60 });
	await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	sniServer?.kill();
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('which certificates the flows pick', () => {
	it('one port serving a certificate per SNI name: each configured name is its own row, as openssl s_client sees it', async () => {
		const host = bed.hosts[0]!;
		// Two certificates told apart by their lifetime: the default one, and the one for api.example.org.
		const byDefault = await bed.issueCertificate(host, 90);
		const forApi = await bed.issueCertificate(host, 45);
		const tls = join(host.root, 'etc/flotilla/tls');
		for (const [name, c] of [
			['default', byDefault],
			['api', forApi]
		] as const) {
			await writeFile(join(tls, `${name}.crt`), c.cert);
			await writeFile(join(tls, `${name}.key`), c.key, { mode: 0o600 });
		}
		sniServer = spawn(
			'openssl',
			[
				's_server',
				'-accept',
				`${host.address}:${SNI_PORT}`,
				'-cert',
				join(tls, 'default.crt'),
				'-key',
				join(tls, 'default.key'),
				'-servername',
				'api.example.org',
				'-cert2',
				join(tls, 'api.crt'),
				'-key2',
				join(tls, 'api.key'),
				'-www',
				'-quiet'
			],
			{ stdio: 'ignore' }
		);
		await waitFor('the SNI listener', () =>
			handshake(host.address, SNI_PORT, { timeoutMs: 1_000 }).then(
				() => true,
				() => false
			)
		);
		for (const [role, file, servername] of [
			['vhost-default', '/etc/flotilla/tls/default.crt', null],
			['vhost-api', '/etc/flotilla/tls/api.crt', 'api.example.org']
		] as const) {
			await defineCertRole(
				systemActor,
				certRoleSchema.parse({
					role,
					cert_path: file,
					key_path: file.replace('.crt', '.key'),
					endpoints: [{ port: SNI_PORT, ...(servername ? { servername } : {}) }],
					reload_command: ['true']
				})
			);
		}
		await setRoles(host.name, ['vhost-default', 'vhost-api']);
		try {
			expect((await scanAndWait([host.name])).state).toBe('succeeded');
			const items = (await listInventory()).filter((i) => i.node === host.name);
			const row = (role: string, source: string) => items.find((i) => i.role === role && i.source === source)!;
			expect(items.map((i) => [i.source, i.location]).sort()).toEqual(
				[
					['endpoint', `${host.address}:${SNI_PORT}`],
					['endpoint', `${host.address}:${SNI_PORT} (api.example.org)`],
					['file', '/etc/flotilla/tls/api.crt'],
					['file', '/etc/flotilla/tls/default.crt']
				].sort()
			);
			// What each name is served is what openssl sees with that name, and it is what the role's file holds.
			expect(row('vhost-api', 'endpoint')).toMatchObject({
				servername: 'api.example.org',
				fingerprint_sha256: await servedByOpenssl(host.address, SNI_PORT, 'api.example.org'),
				days_left: 44,
				mismatch: false
			});
			expect(row('vhost-api', 'endpoint').fingerprint_sha256).toBe(forApi.fingerprint);
			expect(row('vhost-default', 'endpoint')).toMatchObject({
				servername: null,
				fingerprint_sha256: await servedByOpenssl(host.address, SNI_PORT, null),
				days_left: 89,
				mismatch: false
			});
			expect(row('vhost-default', 'endpoint').fingerprint_sha256).toBe(byDefault.fingerprint);
			expect(row('vhost-api', 'file')).toMatchObject({ fingerprint_sha256: forApi.fingerprint, mismatch: false });
			expect(row('vhost-default', 'file')).toMatchObject({
				fingerprint_sha256: byDefault.fingerprint,
				mismatch: false
			});
		} finally {
			await setRoles(host.name, ['web']);
		}
	});

	it('"rotate all expiring under N days" picks exactly the nodes with a certificate under N days, and rotates them', async () => {
		const [fine, soon, sooner] = bed.hosts as [TestHost, TestHost, TestHost];
		// On disk, renewed but never reloaded: 20 days left on one node, 5 on another.
		for (const [host, days] of [
			[soon, 20],
			[sooner, 5]
		] as const) {
			const c = await bed.issueCertificate(host, days);
			await writeFile(join(host.root, hostPaths.tlsCert), c.cert);
			await writeFile(join(host.root, hostPaths.tlsKey), c.key, { mode: 0o600 });
		}
		for (const h of bed.hosts) expect((await scanAndWait([h.name])).state).toBe('succeeded');
		const names = (plan: Awaited<ReturnType<typeof planRotation>>) => plan.nodes.map((n) => n.name);
		expect(names(await planRotation({ expiring_within_days: 10, dry_run: true }))).toEqual([sooner.name]);
		expect(names(await planRotation({ expiring_within_days: 30, dry_run: true }))).toEqual([soon.name, sooner.name]);

		caPem = (await createInternalCa(systemActor, createCaSchema.parse({ name: 'selection CA' }))).certPem;
		const before = await Promise.all(bed.hosts.map(served));
		const { runId } = await startRotation(systemActor, { expiring_within_days: 30, dry_run: false });
		const done = await waitForRun(runId!, ['succeeded', 'failed'], 120_000);
		expect(done.state).toBe('succeeded');
		expect(done.tasks.map((t) => t.nodeName).sort()).toEqual([soon.name, sooner.name]);
		// The two now serve what the internal CA just issued them; the node with nothing expiring was not touched.
		const after = await Promise.all(bed.hosts.map(served));
		expect(after[0]).toBe(before[0]);
		const issued = new Map((await listIssued()).map((c) => [c.nodeName, c.fingerprint]));
		expect(after[1]).toBe(issued.get(soon.name));
		expect(after[2]).toBe(issued.get(sooner.name));
		expect(issued.has(fine.name)).toBe(false);
		const files = (await listInventory()).filter((i) => i.source === 'file' && i.node !== fine.name);
		expect(files.map((i) => [i.node, i.days_left, i.mismatch]).sort()).toEqual([
			[soon.name, 59, false],
			[sooner.name, 59, false]
		]);
		// Nothing expires within 30 days any more.
		expect((await planRotation({ expiring_within_days: 30, dry_run: true })).nodes).toEqual([]);
	});

	it('a revoked certificate still served shows at once as not verified, as openssl verify -crl_check says', async () => {
		const [, soon, sooner] = bed.hosts as [TestHost, TestHost, TestHost];
		const issued = (await listIssued()).find((c) => c.nodeName === soon.name)!;
		await revokeIssued(systemActor, issued.id, 'keyCompromise');
		// No scan in between: the inventory judges revocation as it is read.
		const items = await listInventory();
		const of = (host: TestHost) =>
			items
				.filter((i) => i.node === host.name)
				.map((i) => [i.source, i.chain_verified, i.chain_error])
				.sort();
		const revoked = `revoked by the internal CA on ${new Date().toISOString().slice(0, 10)} (keyCompromise)`;
		expect(of(soon)).toEqual([
			['endpoint', false, revoked],
			['file', false, revoked]
		]);
		expect(of(sooner)).toEqual([
			['endpoint', true, null],
			['file', true, null]
		]);
		// openssl, given the CA's CRL, refuses the revoked one and accepts the other.
		const dir = bed.dir;
		await writeFile(join(dir, 'selection-ca.pem'), caPem);
		await writeFile(join(dir, 'selection.crl'), await currentCrlPem());
		const verify = (host: TestHost) =>
			run('openssl', [
				'verify',
				'-crl_check',
				'-CAfile',
				join(dir, 'selection-ca.pem'),
				'-CRLfile',
				join(dir, 'selection.crl'),
				join(host.root, hostPaths.tlsCert)
			]).then(
				(r) => r.stdout,
				(err: { stdout: string; stderr: string }) => `${err.stdout}${err.stderr}`
			);
		expect(await verify(soon)).toContain('certificate revoked');
		expect(await verify(sooner)).toBe(`${join(sooner.root, hostPaths.tlsCert)}: OK\n`);
	});

	it('the scheduled scan covers every node with a certificate role whose host key is accepted, and only those', async () => {
		const cred = (await db().select({ c: nodes.credentialId }).from(nodes).limit(1))[0]!.c;
		// Neither is ever contacted: one's host key was never accepted, the other has no certificate role.
		await db()
			.insert(nodes)
			.values([
				{ name: 'unaccepted', host: '127.0.1.9', credentialId: cred, roles: ['web'], hostKeyStatus: 'unknown' },
				{
					name: 'no-cert-role',
					host: '127.0.1.59',
					credentialId: cred,
					roles: ['db'],
					hostKeyStatus: 'pinned',
					hostKeyFingerprint: bed.hosts[0]!.hostKeyFingerprint
				}
			]);
		const turn = await runScheduledScan();
		expect(turn.nodes).toBe(3);
		const done = await waitForRun(turn.run_id!, ['succeeded', 'failed'], 60_000);
		expect(done.state).toBe('succeeded');
		expect(done.createdBy).toBe('cert-scan');
		expect(done.tasks.map((t) => [t.nodeName, t.state]).sort()).toEqual(
			bed.hosts.map((h) => [h.name, 'succeeded']).sort()
		);
		// With no node carrying a certificate role, a turn starts nothing.
		await db().update(nodes).set({ roles: [] });
		expect(await runScheduledScan()).toEqual({ run_id: null, nodes: 0 });
	});
});
