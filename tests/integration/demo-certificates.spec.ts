import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { createCaSchema } from '../../src/lib/schemas/certificates';
import { createInternalCa } from '../../src/lib/server/certs/authority';
import { listInventory } from '../../src/lib/server/certs/inventory';
import { listIssued } from '../../src/lib/server/certs/issued';
import { startRotation } from '../../src/lib/server/certs/plan';
import { ON_DISK_ONLY, type RoleRotation } from '../../src/lib/server/certs/rotate';
import { startScan } from '../../src/lib/server/certs/scan';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { listNodes } from '../../src/lib/server/fleet/nodes';
import { startDemoFleet, type DemoFleet } from '../../src/lib/server/sim/demo-fleet';
import { nodePaths } from '../../src/lib/server/sim/paths';
import { freshPglite } from '../support/databases';
import { waitForRun } from '../support/engine';

/** The quick start's certificates: the demo fleet's nodes keep real certificates with a spread of expiries. */
describe('the demo fleet’s certificates', () => {
	let handle: DatabaseHandle;
	let fleet: DemoFleet;

	beforeAll(async () => {
		handle = await freshPglite();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		registerDomains();
		fleet = await startDemoFleet(mkdtempSync(path.join(tmpdir(), 'flotilla-demo-certs-')));
		await fleet.checked;
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
	});
	afterAll(async () => {
		await stopEngine();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	it('a scan finds one expired, a few expiring, one mismatched and the rest fine, all chained to the demo CA; the fleet status says so', async () => {
		const { runId, nodes } = await startScan(systemActor);
		// Every node with a role and an accepted key: app-19's key was never accepted, app-15's changed.
		expect(nodes).toBe(22);
		const run = await waitForRun(runId, ['succeeded', 'failed'], 60_000);
		// The two that refuse connections cannot be read.
		expect(
			run.tasks
				.filter((t) => t.state === 'failed')
				.map((t) => t.nodeName)
				.sort()
		).toEqual(['app-11', 'edge-03']);
		// One file per node (a node with two roles keeps one certificate), and app-10's ingress: its file and endpoint.
		const items = await listInventory();
		expect(items).toHaveLength(22);
		const byLevel = (level: string) => [...new Set(items.filter((i) => i.level === level).map((i) => i.node))];
		expect(byLevel('expired')).toEqual(['app-06']);
		// app-11 and app-19 expire soon too, but one refuses connections and the other's key is not accepted.
		expect(byLevel('warning')).toEqual(['app-03']);
		expect(byLevel('critical')).toEqual([]);
		// The ingress endpoint still serves the certificate before its renewal: file and endpoint are flagged.
		const mismatched = items.filter((i) => i.mismatch);
		expect(mismatched.map((i) => [i.node, i.role, i.source]).sort()).toEqual([
			['app-10', 'ingress', 'endpoint'],
			['app-10', 'ingress', 'file']
		]);
		const [served, onDisk] = ['endpoint', 'file'].map((src) => mismatched.find((i) => i.source === src)!);
		expect(served!.fingerprint_sha256).not.toBe(onDisk!.fingerprint_sha256);
		// The endpoint serves the older of the two (the renewal is on disk); both are fine on their dates.
		expect(served!.not_after!.getTime()).toBeLessThan(onDisk!.not_after!.getTime());
		expect([served!.level, onDisk!.level]).toEqual(['ok', 'ok']);
		expect(items.filter((i) => i.source === 'endpoint')).toHaveLength(1);
		// Every chain verifies against the demo CA, except the expired certificate's: it is not valid now.
		expect(items.filter((i) => !i.chain_verified).map((i) => [i.node, i.chain_error])).toEqual([
			['app-06', expect.stringMatching(/^CN = app-06 is not valid now/)]
		]);
		const { items: rows } = await listNodes({ limit: 500 });
		expect(rows.find((n) => n.name === 'app-06')!.status).toBe('CERT_EXPIRED');
		expect(rows.find((n) => n.name === 'app-03')!.status).toBe('CERT_EXPIRING');
	});

	it('reloading the ingress makes it serve its file: the next scan of app-10 flags no mismatch', async () => {
		const host = fleet.hosts.find((h) => h.name === 'app-10')!;
		const onDisk = new X509Certificate(host.model.files.get('/etc/flotilla/tls/ingress.crt')!);
		host.model.onReload!.get('ingress-tls')!();
		const { runId } = await startScan(systemActor, { nodes: ['app-10'] });
		await waitForRun(runId, ['succeeded'], 60_000);
		const items = (await listInventory()).filter((i) => i.node === 'app-10' && i.role === 'ingress');
		expect(items.map((i) => [i.source, i.mismatch, i.fingerprint_sha256])).toEqual(
			expect.arrayContaining([
				['endpoint', false, onDisk.fingerprint256],
				['file', false, onDisk.fingerprint256]
			])
		);
		expect(items).toHaveLength(2);
	});

	it('a rotation succeeds on the demo fleet: the node makes its key and request, the internal CA signs, the new file is read back', async () => {
		await createInternalCa(systemActor, createCaSchema.parse({ name: 'Demo internal CA' }));
		const host = fleet.hosts.find((h) => h.name === 'app-03')!;
		const oldCert = host.model.files.get(nodePaths.tlsCert)!;
		const oldKey = host.model.files.get(nodePaths.tlsKey)!;
		const { runId } = await startRotation(systemActor, { nodes: ['app-03'], dry_run: false });
		const run = await waitForRun(runId!, ['succeeded', 'failed'], 60_000);
		expect(run.tasks.map((t) => [t.nodeName, t.state, t.error])).toEqual([['app-03', 'succeeded', null]]);
		// app-03's role has no endpoint: the node's files were checked instead of a handshake, and the task says so.
		expect((run.tasks[0]!.memo as { roles: RoleRotation[] }).roles.map((r) => r.verified)).toEqual([ON_DISK_ONLY]);
		const newCert = host.model.files.get(nodePaths.tlsCert)!;
		expect(newCert).not.toBe(oldCert);
		expect(host.model.files.get(nodePaths.tlsKey)).not.toBe(oldKey);
		// The new key is the one the node made: it matches the certificate the CA signed, and never left the node.
		const cert = new X509Certificate(newCert);
		expect(cert.checkPrivateKey(createPrivateKey(host.model.files.get(nodePaths.tlsKey)!))).toBe(true);
		expect(cert.issuer).toBe('CN=Demo internal CA');
		const [issued] = await listIssued();
		expect(issued!.fingerprint).toBe(cert.fingerprint256);
		// The backups stay beside the files; nothing of the request is left.
		expect([...host.model.files.keys()].filter((f) => f.includes('csr') || f.endsWith('.flotilla-new'))).toEqual([]);
		const items = await listInventory();
		const app03 = items.find((i) => i.node === 'app-03')!;
		expect(app03).toMatchObject({ level: 'ok', fingerprint_sha256: cert.fingerprint256 });
	});
});
