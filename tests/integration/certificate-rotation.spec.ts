import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, asc, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { certRoleSchema, createCaSchema } from '../../src/lib/schemas/certificates';
import { systemActor } from '../../src/lib/server/audit';
import { createInternalCa } from '../../src/lib/server/certs/authority';
import { listInventory } from '../../src/lib/server/certs/inventory';
import { listIssued } from '../../src/lib/server/certs/issued';
import { planRotation, startRotation } from '../../src/lib/server/certs/plan';
import { ON_DISK_ONLY, type RoleRotation } from '../../src/lib/server/certs/rotate';
import { runAutoRenew } from '../../src/lib/server/certs/renew';
import { defineCertRole } from '../../src/lib/server/certs/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { cancelRun, getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { log } from '../../src/lib/server/log';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { hostPaths, startTestbed, type Testbed, type TestHost } from '../testbed/testbed';
import { POST as rotateEndpoint } from '../../src/routes/api/security/certificates/rotate/+server';

/**
 * Certificate rotation on real sshd hosts (127.0.1.194–197) serving real TLS: what is served is proved by
 * handshakes, what is on disk is read from the hosts' filesystems, and the chain is judged by `openssl verify`.
 * web-0 is the control plane; web-1 and web-2 carry the `web` role, api-3 the `api` role, rotated after `web`.
 */

const run = promisify(execFile);
// The console's public origin: what the CA's CRL URL in the certificates it signs is built from. Set before the
// imports run, as config is read once, by the first module that needs it.
const ORIGIN = vi.hoisted(() => (process.env.ORIGIN = 'https://console.example.org'));
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let caPem: string;
const idOf = new Map<string, string>();
const logged: string[] = [];

/**
 * The role's reload: the testbed's graceful reload, except that a marker file makes it reload and then fail
 * (`fail-reload`), hang (`hang-reload`), or do nothing and say it worked (`noop-reload`), or put the old key
 * back beside the new certificate (`swap-key-reload`) or the old certificate beside the new key
 * (`swap-cert-reload`) and say it worked, once; or fail every
 * reload without reloading, until it is removed (`broken-reload`).
 */
/** How long the hung reload sleeps: a number of this test's own, so that its process is told apart from others'. */
const HANG_SECONDS = 600 + Math.floor(Math.random() * 90_000);
const reloadScript = `#!/bin/sh
if [ -e /etc/flotilla/hang-reload ]; then rm -f /etc/flotilla/hang-reload; sleep ${HANG_SECONDS}; fi
if [ -e /etc/flotilla/noop-reload ]; then rm -f /etc/flotilla/noop-reload; exit 0; fi
if [ -e /etc/flotilla/swap-key-reload ]; then
	rm -f /etc/flotilla/swap-key-reload
	cp -p ${hostPaths.tlsKey}.flotilla-bak ${hostPaths.tlsKey}
	exit 0
fi
if [ -e /etc/flotilla/swap-cert-reload ]; then
	rm -f /etc/flotilla/swap-cert-reload
	cp -p ${hostPaths.tlsCert}.flotilla-bak ${hostPaths.tlsCert}
	exit 0
fi
if [ -e /etc/flotilla/broken-reload ]; then echo "reload: the service manager is broken" >&2; exit 1; fi
if [ -e /etc/flotilla/fail-reload ]; then
	rm -f /etc/flotilla/fail-reload
	systemctl reload tls-endpoint
	echo "reload: the new configuration does not load" >&2
	exit 1
fi
exec systemctl reload tls-endpoint
`;

const onDisk = (host: TestHost) => readFile(join(host.root, hostPaths.tlsCert), 'utf8');
const served = async (host: TestHost) => (await bed.servedCertificate(host)).fingerprint;
const mark = (host: TestHost, marker: string) => writeFile(join(host.root, 'etc/flotilla', marker), '1');

async function rotateAndWait(nodeNames: string[]) {
	const { runId } = await startRotation(systemActor, { nodes: nodeNames, dry_run: false });
	return waitForRun(runId!, ['succeeded', 'failed'], 120_000);
}

async function taskLog(runId: string, node: string): Promise<string[]> {
	const r = await getRun(runId);
	const task = r.tasks.find((t) => t.nodeName === node)!;
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, task.id), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((row) => (row.data.lines as { t: string }[]).map((l) => l.t));
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 4, firstHost: 194, roles: [] });
	pg = await freshPostgres('flotilla_certrot');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) {
		const original = log[level].bind(log);
		vi.spyOn(log, level).mockImplementation(((...args: unknown[]) => {
			logged.push(JSON.stringify(args));
			return (original as (...a: unknown[]) => void)(...args);
		}) as never);
	}
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const names = ['web-0', 'web-1', 'web-2', 'api-3'];
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h, i) => ({
				name: names[i]!,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				roles: i === 3 ? ['api'] : ['web'],
				controlPlane: i === 0,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id, name: nodes.name });
	for (const r of rows) idOf.set(r.name, r.id);
	for (const h of bed.hosts) await writeFile(join(h.root, 'etc/flotilla/reload.sh'), reloadScript, { mode: 0o755 });
	for (const [role, order] of [
		['web', 10],
		['api', 20]
	] as const) {
		await defineCertRole(
			systemActor,
			certRoleSchema.parse({
				role,
				cert_path: hostPaths.tlsCert,
				key_path: hostPaths.tlsKey,
				endpoints: [{ port: 8443 }],
				reload_command: ['sh', '/etc/flotilla/reload.sh'],
				validity_days: 30,
				extra_sans: ['tls.example.org'],
				order
			})
		);
	}
	caPem = (await createInternalCa(systemActor, createCaSchema.parse({ name: 'Flotilla test CA' }))).certPem;
	await writeFile(join(bed.dir, 'internal-ca.pem'), caPem);
	await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	vi.restoreAllMocks();
	delete process.env.ORIGIN;
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('certificate rotation on real hosts', () => {
	it('plans the control plane first, then each role in its order', async () => {
		const plan = await planRotation({ dry_run: true });
		expect(plan.nodes.map((n) => [n.name, n.phase])).toEqual([
			['web-0', 0],
			['web-1', 1],
			['web-2', 1],
			['api-3', 2]
		]);
		expect(plan.phases.map((p) => p.label)).toEqual(['Control plane first', 'Role web', 'Role api']);
	});

	it('rotates: the handshake shows the new fingerprint, openssl verify chains it to the CA, and the node key never leaves the node', async () => {
		const host = bed.hosts[1]!;
		const before = await served(host);
		const oldFile = await onDisk(host);
		const done = await rotateAndWait(['web-1']);
		expect(done.state).toBe('succeeded');
		const [issued] = await listIssued();
		expect(issued).toMatchObject({ nodeName: 'web-1', role: 'web' });
		// What the endpoint serves now is the certificate the CA just issued, and it is on disk.
		const now = await served(host);
		expect(now).not.toBe(before);
		expect(now).toBe(issued!.fingerprint);
		expect(await onDisk(host)).toBe(issued!.pem);
		await run('openssl', [
			'verify',
			'-CAfile',
			join(bed.dir, 'internal-ca.pem'),
			join(host.root, hostPaths.tlsCert)
		]).then(({ stdout }) => expect(stdout.trim()).toBe(`${join(host.root, hostPaths.tlsCert)}: OK`));
		const { stdout: text } = await run('openssl', [
			'x509',
			'-in',
			join(host.root, hostPaths.tlsCert),
			'-noout',
			'-ext',
			'subjectAltName,crlDistributionPoints'
		]);
		expect(text).toContain(`DNS:web-1, IP Address:${host.address}, DNS:tls.example.org`);
		// Relying parties find the CA's CRL where the console publishes it.
		expect(text).toContain(`URI:${ORIGIN}/crl/${issued!.caId}.crl`);
		// The old certificate is kept beside it, as the backup.
		expect(await readFile(join(host.root, `${hostPaths.tlsCert}.flotilla-bak`), 'utf8')).toBe(oldFile);
		// The certificate holds the key on the node.
		const key = await readFile(join(host.root, hostPaths.tlsKey), 'utf8');
		const { stdout: pub } = await run('openssl', ['pkey', '-in', join(host.root, hostPaths.tlsKey), '-pubout']);
		const { stdout: certPub } = await run('openssl', [
			'x509',
			'-in',
			join(host.root, hostPaths.tlsCert),
			'-noout',
			'-pubkey'
		]);
		expect(certPub).toBe(pub);
		// The inventory shows it, served and on disk, chained to the trusted internal CA.
		const items = (await listInventory()).filter((i) => i.node === 'web-1');
		expect(items.map((i) => [i.source, i.fingerprint_sha256, i.chain_verified, i.mismatch, i.days_left])).toEqual([
			['file', now, true, false, 29],
			['endpoint', now, true, false, 29]
		]);
		// Nowhere in the console: no text column of any table, no log line holds the key's secret part, whether as
		// PEM (its base64 from the 37th byte of the DER on is the private scalar: the prefix is the same for every
		// P-256 key, and the public key after it is in the certificate), as base64url or as hex.
		const body = key
			.split('\n')
			.filter((l) => l && !l.startsWith('-----'))
			.join('');
		const d = createPrivateKey(key).export({ format: 'jwk' }).d!;
		const probes = [body.slice(48, 88), d, Buffer.from(d, 'base64url').toString('hex')];
		const columns = (await db().execute(sql`
			select table_schema, table_name, column_name from information_schema.columns
			where table_schema in ('public', 'pgboss') and data_type in ('text', 'jsonb', 'json')`)) as unknown as {
			table_schema: string;
			table_name: string;
			column_name: string;
		}[];
		expect(columns.some((c) => c.table_name === 'events')).toBe(true);
		for (const c of columns) {
			for (const probe of probes) {
				const hits = (await db().execute(
					sql`select 1 from ${sql.identifier(c.table_schema)}.${sql.identifier(c.table_name)}
						where ${sql.identifier(c.column_name)}::text like ${`%${probe}%`}`
				)) as unknown as unknown[];
				expect(hits.length, `${c.table_name}.${c.column_name}`).toBe(0);
			}
		}
		expect(logged.length).toBeGreaterThan(0);
		const lines = await taskLog(done.id, 'web-1');
		for (const probe of probes) {
			expect(logged.join('\n')).not.toContain(probe);
			expect(lines.join('\n')).not.toContain(probe);
		}
		expect(lines).toContain(`web: ${host.address}:8443 serves the new certificate ${now}`);
	});

	it('a reload that fails restores the backup, reloads, and the handshake proves the old certificate is served again', async () => {
		const host = bed.hosts[2]!;
		const before = await served(host);
		const oldFile = await onDisk(host);
		await mark(host, 'fail-reload');
		const done = await rotateAndWait(['web-2']);
		expect(done.state).toBe('failed');
		expect(done.tasks[0]!.state).toBe('rolled_back');
		expect(done.tasks[0]!.needsAttention).toBe(false);
		expect(await served(host)).toBe(before);
		expect(await onDisk(host)).toBe(oldFile);
		const lines = await taskLog(done.id, 'web-2');
		expect(lines).toEqual(
			expect.arrayContaining(['web: backup restored', `web: ${host.address}:8443 serves the old certificate ${before}`])
		);
		// The new key and CSR it made are gone from the node.
		expect(
			(await readdir(join(host.root, 'etc/flotilla/tls'))).filter(
				(f) => f.endsWith('.flotilla-new') || f.endsWith('-csr')
			)
		).toEqual([]);
	});

	it('a reload that says it worked but leaves the old certificate served is caught by the handshake and undone', async () => {
		const host = bed.hosts[2]!;
		const before = await served(host);
		const oldFile = await onDisk(host);
		await mark(host, 'noop-reload');
		const done = await rotateAndWait(['web-2']);
		expect(done.tasks[0]!.state).toBe('rolled_back');
		expect(done.tasks[0]!.error).toMatch(
			new RegExp(`^verify: web: ${host.address.replaceAll('.', '\\.')}:8443 does not serve the new certificate`)
		);
		expect(await served(host)).toBe(before);
		expect(await onDisk(host)).toBe(oldFile);
	});

	it('a failure in the control-plane phase stops every later phase: their certificates are untouched', async () => {
		const [cp, , , api] = bed.hosts;
		const before = await Promise.all(bed.hosts.map(served));
		await mark(cp!, 'fail-reload');
		const { runId } = await startRotation(systemActor, { dry_run: false });
		const done = await waitForRun(runId!, ['failed'], 120_000);
		const states = Object.fromEntries(done.tasks.map((t) => [t.nodeName, t.state]));
		expect(states).toEqual({ 'web-0': 'rolled_back', 'web-1': 'skipped', 'web-2': 'skipped', 'api-3': 'skipped' });
		expect(done.reason).toMatch(/failed in phase 0/);
		expect(await Promise.all(bed.hosts.map(served))).toEqual(before);
		expect(await served(api!)).toBe(before[3]);
	});

	it('a rollback whose own reload fails ends failed and needing attention, with the reason', async () => {
		const host = bed.hosts[2]!;
		const oldFile = await onDisk(host);
		const before = await served(host);
		await mark(host, 'broken-reload');
		try {
			const done = await rotateAndWait(['web-2']);
			expect(done.state).toBe('failed');
			expect(done.tasks[0]).toMatchObject({ state: 'failed', needsAttention: true });
			expect(done.tasks[0]!.error).toMatch(/^reload: /);
			const steps = done.tasks[0]!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`);
			expect(steps).toContain('undo:install:failed');
			// The backup went back on disk before the reload that failed; no reload ever served the new one.
			expect(await onDisk(host)).toBe(oldFile);
			expect(await served(host)).toBe(before);
		} finally {
			await rm(join(host.root, 'etc/flotilla/broken-reload'), { force: true });
		}
	});

	it('a rotation of a node another rotation is still on answers 409, and starts nothing', async () => {
		const host = bed.hosts[3]!;
		await mark(host, 'hang-reload');
		const { runId } = await startRotation(systemActor, { nodes: ['api-3'], dry_run: false });
		try {
			await waitFor(
				'the hung reload',
				async () => (await getRun(runId!)).tasks[0]?.steps.some((s) => s.name === 'reload' && s.state === 'running'),
				60_000
			);
			const runsBefore = await db().execute(sql`select count(*)::int as n from runs`);
			const res = await rotateEndpoint({
				request: new Request('http://console/api/security/certificates/rotate', {
					method: 'POST',
					headers: { 'content-type': 'application/json' },
					body: JSON.stringify({ nodes: ['api-3', 'web-1'] })
				}),
				url: new URL('http://console/api/security/certificates/rotate'),
				params: {},
				locals: {},
				getClientAddress: () => '127.0.0.1'
			} as never);
			expect(res.status).toBe(409);
			expect((await res.json()).error.code).toBe('conflict');
			expect(await db().execute(sql`select count(*)::int as n from runs`)).toEqual(runsBefore);
		} finally {
			await cancelRun(systemActor, runId!);
			await waitForRun(runId!, ['cancelled'], 60_000);
			await rm(join(host.root, 'etc/flotilla/hang-reload'), { force: true });
		}
	});

	it('a cancel during a hung reload kills it on the node, restores the backup and serves the old certificate', async () => {
		const host = bed.hosts[3]!;
		const before = await served(host);
		const oldFile = await onDisk(host);
		await mark(host, 'hang-reload');
		const { runId } = await startRotation(systemActor, { nodes: ['api-3'], dry_run: false });
		await waitFor(
			'the hung reload',
			async () => (await getRun(runId!)).tasks[0]?.steps.some((s) => s.name === 'reload' && s.state === 'running'),
			60_000
		);
		// The reload really hangs on the host: its `sleep` is running.
		const sleeping = async () => {
			const found: string[] = [];
			for (const pid of (await readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
				const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
				if (cmd === `sleep\u0000${HANG_SECONDS}\u0000`) found.push(pid);
			}
			return found;
		};
		await waitFor('the hung reload’s sleep on the host', async () => (await sleeping()).length > 0);
		await cancelRun(systemActor, runId!);
		const done = await waitForRun(runId!, ['cancelled'], 60_000);
		expect(done.tasks[0]!.state).toBe('cancelled');
		expect(await sleeping()).toEqual([]);
		expect(await onDisk(host)).toBe(oldFile);
		expect(await served(host)).toBe(before);
		await rm(join(host.root, 'etc/flotilla/hang-reload'), { force: true });
	});

	it('a self-signed role is rotated by the node itself: a new self-signed certificate is served, nothing is issued', async () => {
		const host = bed.hosts[3]!;
		const before = await served(host);
		const issuedBefore = (await listIssued()).length;
		await defineCertRole(
			systemActor,
			certRoleSchema.parse({
				role: 'selfsigned',
				cert_path: hostPaths.tlsCert,
				key_path: hostPaths.tlsKey,
				endpoints: [{ port: 8443 }],
				reload_command: ['sh', '/etc/flotilla/reload.sh'],
				issuer: 'self-signed',
				validity_days: 7
			})
		);
		await db()
			.update(nodes)
			.set({ roles: ['selfsigned'] })
			.where(eq(nodes.id, idOf.get('api-3')!));
		const done = await rotateAndWait(['api-3']);
		expect(done.state).toBe('succeeded');
		const now = await served(host);
		expect(now).not.toBe(before);
		const file = join(host.root, hostPaths.tlsCert);
		const { stdout } = await run('openssl', ['verify', '-CAfile', file, file]);
		expect(stdout.trim()).toBe(`${file}: OK`);
		const { stdout: text } = await run('openssl', ['x509', '-in', file, '-noout', '-issuer', '-ext', 'subjectAltName']);
		expect(text).toContain('issuer=CN = api-3');
		expect(text).toContain(`DNS:api-3, IP Address:${host.address}`);
		expect((await listIssued()).length).toBe(issuedBefore);
		const [item] = (await listInventory()).filter((i) => i.node === 'api-3' && i.source === 'endpoint');
		expect(item).toMatchObject({ fingerprint_sha256: now, self_signed: true, chain_verified: false, days_left: 6 });
	});

	it('auto-renew rotates, in one run, the nodes whose certificate passed two thirds of its lifetime, and then none', async () => {
		// In 29 days: web-1's 30-day certificate and api-3's 7-day one are due; the 90-day ones are not.
		const before = await Promise.all(bed.hosts.map(served));
		const turn = await runAutoRenew(new Date(Date.now() + 29 * 86_400_000));
		expect(turn.nodes.sort()).toEqual([idOf.get('web-1')!, idOf.get('api-3')!].sort());
		const done = await waitForRun(turn.run_id!, ['succeeded', 'failed'], 120_000);
		expect(done.state).toBe('succeeded');
		expect(done.createdBy).toBe('cert-auto-renew');
		const after = await Promise.all(bed.hosts.map(served));
		expect(after.map((fp, i) => fp !== before[i])).toEqual([false, true, false, true]);
		// Fresh certificates are not due now.
		expect(await runAutoRenew()).toEqual({ run_id: null, nodes: [] });
	});

	describe('a role without endpoints', () => {
		const pubkeys = async (host: TestHost) => {
			const cert = await run('openssl', ['x509', '-in', join(host.root, hostPaths.tlsCert), '-noout', '-pubkey']);
			const key = await run('openssl', ['pkey', '-in', join(host.root, hostPaths.tlsKey), '-pubout']);
			return { cert: cert.stdout, key: key.stdout };
		};

		beforeAll(async () => {
			// web-2 keeps its certificate for a service the console cannot reach: nothing to handshake with.
			await defineCertRole(
				systemActor,
				certRoleSchema.parse({
					role: 'vault',
					cert_path: hostPaths.tlsCert,
					key_path: hostPaths.tlsKey,
					endpoints: [],
					reload_command: ['sh', '/etc/flotilla/reload.sh'],
					order: 30
				})
			);
			await db()
				.update(nodes)
				.set({ roles: ['vault'] })
				.where(eq(nodes.id, idOf.get('web-2')!));
		});

		it('the plan marks it as not proven by handshake, and the rotation verifies the files on the node instead', async () => {
			const plan = await planRotation({ nodes: ['web-2', 'web-1'], dry_run: true });
			expect(plan.nodes.map((n) => [n.name, n.warning])).toEqual([
				['web-1', null],
				['web-2', 'not proven by handshake: role vault has no endpoints']
			]);
			expect(plan.warnings).toEqual([
				"Role vault has no endpoints (1 node): not proven by handshake; the new certificate is verified on the node's disk only, not as served"
			]);
			const host = bed.hosts[2]!;
			const done = await rotateAndWait(['web-2']);
			expect(done.state).toBe('succeeded');
			const [issued] = await listIssued();
			expect(issued).toMatchObject({ nodeName: 'web-2', role: 'vault' });
			expect(await onDisk(host)).toBe(issued!.pem);
			const { cert, key } = await pubkeys(host);
			expect(cert).toBe(key);
			const lines = await taskLog(done.id, 'web-2');
			expect(lines).toContain(
				`vault: ${hostPaths.tlsCert} holds the new certificate ${issued!.fingerprint} and its key: ${ON_DISK_ONLY}`
			);
			expect(lines.filter((l) => l.includes(':8443 serves'))).toEqual([]);
			// The task's result says how far the proof went.
			const memo = done.tasks[0]!.memo as { roles: RoleRotation[] };
			expect(memo.roles.map((r) => [r.role, r.verified])).toEqual([['vault', ON_DISK_ONLY]]);
		});

		/** web-2's certificate file, key and recorded fingerprint before a rotation. */
		async function web2Before(host: TestHost) {
			return {
				oldFile: await onDisk(host),
				oldKey: await readFile(join(host.root, hostPaths.tlsKey), 'utf8'),
				oldFingerprint: (await listInventory()).find((i) => i.node === 'web-2' && i.source === 'file')!
					.fingerprint_sha256!
			};
		}

		it('a new certificate installed beside a key it does not belong to fails the check and the backup is restored', async () => {
			const host = bed.hosts[2]!;
			const { oldFile, oldKey, oldFingerprint } = await web2Before(host);
			await mark(host, 'swap-key-reload');
			const done = await rotateAndWait(['web-2']);
			expect(done.state).toBe('failed');
			expect(done.tasks[0]).toMatchObject({ state: 'rolled_back', needsAttention: false });
			expect(done.tasks[0]!.error).toBe(
				`verify: vault: the key in ${hostPaths.tlsKey} does not belong to the new certificate in ${hostPaths.tlsCert}`
			);
			// The certificate had been the one issued: only the pairing was wrong.
			const [issued] = await listIssued();
			expect(issued!.nodeName).toBe('web-2');
			expect(issued!.fingerprint).not.toBe(oldFingerprint);
			expect(await onDisk(host)).toBe(oldFile);
			expect(await readFile(join(host.root, hostPaths.tlsKey), 'utf8')).toBe(oldKey);
			const lines = await taskLog(done.id, 'web-2');
			const restored = lines.indexOf('vault: backup restored');
			expect(restored).toBeGreaterThan(-1);
			expect(
				lines.indexOf(
					`vault: ${hostPaths.tlsCert} holds the old certificate ${oldFingerprint} and its key: ${ON_DISK_ONLY}`
				)
			).toBeGreaterThan(restored);
		});

		it('a reload that puts the old certificate file back is caught by its fingerprint and undone', async () => {
			const host = bed.hosts[2]!;
			const { oldFile, oldKey, oldFingerprint } = await web2Before(host);
			await mark(host, 'swap-cert-reload');
			const done = await rotateAndWait(['web-2']);
			expect(done.tasks[0]).toMatchObject({ state: 'rolled_back', needsAttention: false });
			const [issued] = await listIssued();
			expect(done.tasks[0]!.error).toBe(
				`verify: vault: ${hostPaths.tlsCert} does not hold the new certificate ${issued!.fingerprint} (it holds ${oldFingerprint})`
			);
			expect(await onDisk(host)).toBe(oldFile);
			expect(await readFile(join(host.root, hostPaths.tlsKey), 'utf8')).toBe(oldKey);
		});
	});
});
