import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { openSecret } from '../../src/lib/server/crypto/secret-box';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { credentials, events, nodes, releases, rollouts, runs, sysNodeScans } from '../../src/lib/server/db/schema';
import { rotateKeysSchema } from '../../src/lib/schemas/ssh-keys';
import { driveKeyRotations } from '../../src/lib/server/keys/driver';
import { tryLogin } from '../../src/lib/server/keys/login';
import { getKeyRotation, startKeyRotation } from '../../src/lib/server/keys/rotation';
import { driveRollouts } from '../../src/lib/server/rollouts/driver';
import { nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { connectionStatus, listNodes } from '../../src/lib/server/fleet/nodes';
import { DEMO_APPLIANCE_RELEASE, startDemoFleet } from '../../src/lib/server/sim/demo-fleet';
import { demoProvisionedOrigin } from '../../src/lib/server/sim/demo-provisioning';
import { provisionSchema } from '../../src/lib/schemas/provisioning';
import { provisioningOfNode } from '../../src/lib/server/provisioning/definitions';
import { startProvisioning } from '../../src/lib/server/provisioning/provision';
import { bytesOf } from '../../src/lib/server/sim/host';
import { imageOfRelease, useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { and, eq } from 'drizzle-orm';
import { nodePaths } from '../../src/lib/server/sim/paths';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { freshPglite } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { systemActor } from '../../src/lib/server/audit';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { countByStatus } from '../../src/lib/server/fleet/status';
import { runHealthSweep } from '../../src/lib/server/fleet/sweep';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerDomains } from '../../src/lib/server/domains';
import { log } from '../../src/lib/server/log';

describe('the quick start demo fleet', () => {
	let handle: DatabaseHandle;
	const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-demo-'));
	const key = randomBytes(32);

	/** What the console warned about: the demo's background start (check, first scan) only warns when it fails. */
	const warnings: string[] = [];

	/**
	 * Waits for the demo's start-up scans to end: each start of the demo fleet queues one (22 nodes), and an
	 * engine started later runs all of them, so a test's own run would share the engine's slots with them. On CI
	 * the appliance push below outlasted its 90 s while three such scans ran beside it.
	 */
	async function demoScansDone(): Promise<void> {
		for (const scan of (await db().select().from(runs)).filter((r) => r.kind === 'system-scan')) {
			await waitForRun(scan.id, ['succeeded', 'failed', 'cancelled'], 90_000);
		}
	}

	beforeAll(async () => {
		handle = await freshPglite();
		useDatabase(handle);
		useMasterKey(key);
		useImageStore(path.join(dataDir, 'images'));
		// As the console does before it starts the demo fleet (startup.ts): the demo's first scan is a System
		// Updates run, refused as an unknown kind in a process that has not registered that domain.
		registerDomains();
		const warn = log.warn.bind(log);
		vi.spyOn(log, 'warn').mockImplementation(((...args: unknown[]) => {
			warnings.push(JSON.stringify(args));
			return (warn as (...a: unknown[]) => void)(...args);
		}) as never);
	});
	afterAll(async () => {
		vi.restoreAllMocks();
		useImageStore(undefined);
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	const states = async () => {
		const { items } = await listNodes({ limit: 500 });
		const counts: Record<string, number> = {};
		for (const n of items) counts[connectionStatus(n)] = (counts[connectionStatus(n)] ?? 0) + 1;
		return { items, counts };
	};

	it('registers 24 simulated nodes with pinned keys, in a realistic mix of states after a real check', async () => {
		const fleet = await startDemoFleet(dataDir);
		// Stopped whatever fails, so the restart test below finds the ports free again.
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		// Its first scan for system updates is queued (this test starts no engine) and nothing went wrong.
		const scans = (await db().select().from(runs)).filter((r) => r.kind === 'system-scan');
		expect(scans.map((r) => [r.title, r.state])).toEqual([['Scan 22 nodes for system updates', 'queued']]);
		expect(warnings.filter((w) => w.includes('demo fleet'))).toEqual([]);
		const { items, counts } = await states();
		expect(items).toHaveLength(24);
		expect(counts).toEqual({ reachable: 20, unreachable: 2, host_key_changed: 1, host_key_unknown: 1 });
		expect(items.filter((n) => n.kind === 'appliance')).toHaveLength(4);
		expect(items.filter((n) => n.controlPlane).map((n) => n.name)).toEqual(['app-01', 'app-02']);
		expect(items.every((n) => n.host === '127.0.0.1')).toBe(true);

		// What the update flows will find: a realistic mix, answered over SSH like a real node would.
		const models = fleet.hosts.map((h) => h.model);
		const rebootRequired = models.filter((m) => m.files.has(nodePaths.rebootRequired));
		expect(rebootRequired.length).toBeGreaterThanOrEqual(3);
		expect(rebootRequired.length).toBeLessThan(models.length / 2);
		const daysLeft = models.map(
			(m) =>
				(new Date(new X509Certificate(m.files.get(nodePaths.tlsCert)!).validTo).getTime() - Date.now()) / 86_400_000
		);
		expect(daysLeft.filter((d) => d < 0)).toHaveLength(1);
		expect(daysLeft.filter((d) => d >= 0 && d < 30).length).toBeGreaterThanOrEqual(2);
		expect(daysLeft.filter((d) => d >= 30).length).toBeGreaterThan(models.length / 2);
		const activeSlots = models
			.filter((m) => m.files.has(`${nodePaths.slotDir}/active`))
			.map((m) => m.files.get(`${nodePaths.slotDir}/active`));
		expect(activeSlots.sort()).toEqual(['a\n', 'a\n', 'b\n', 'b\n']);
		const latest = (role: string) => fleet.origins.get(role)!.commits.at(-1)!.sha;
		const outdated = models.filter((m) =>
			[...m.repos].some(([dir, repo]) => repo.head !== latest(dir.replace('/opt/', '')))
		);
		expect(outdated.length).toBeGreaterThan(0);
		expect(outdated.length).toBeLessThan(models.length / 2);

		const app03 = fleet.hosts.find((h) => h.name === 'app-03')!;
		// The demo's keys are sealed at rest like every credential: nothing readable in the file.
		const stored = readFileSync(path.join(dataDir, 'demo-fleet.json'), 'utf8');
		expect(stored).not.toMatch(/PRIVATE KEY|clientKey/);
		const { clientKey } = JSON.parse(openSecret(key, stored, 'demo-fleet')) as { clientKey: string };
		const conn = await connect({
			host: app03.address,
			port: app03.port,
			username: 'root',
			privateKey: clientKey,
			hostKeyFingerprint: app03.hostKeyFingerprint
		});
		try {
			const pkgs = await conn.exec(sh`cat ${nodePaths.rebootRequiredPackages}`);
			expect(pkgs).toMatchObject({ exitCode: 0, stdout: 'linux-image-6.1.0-29-amd64\n' });
			const cert = await conn.exec(sh`openssl x509 -in ${nodePaths.tlsCert} -noout -subject -issuer`);
			expect(cert.stdout).toBe('subject=CN = app-03\nissuer=CN = Flotilla demo CA\n');
		} finally {
			conn.close();
		}
	});

	it('comes back as the same fleet after a restart: same keys, same ports, no duplicates', async () => {
		const before = (await states()).items.map((n) => [n.name, n.port, n.hostKeyFingerprint]);
		const fleet = await startDemoFleet(dataDir);
		await fleet.checked;
		const after = await states();
		expect(after.items.map((n) => [n.name, n.port, n.hostKeyFingerprint])).toEqual(before);
		expect(after.counts.reachable).toBe(20);
		expect(warnings.filter((w) => w.includes('demo fleet'))).toEqual([]);
		await fleet.stop();
	});

	it('shows Code Sync states after the health sweep, and Update All brings the outdated nodes up to date', async () => {
		const fleet = await startDemoFleet(dataDir);
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		// The statuses below are the fleet's once the demo's scans are done, not their tasks in progress.
		await demoScansDone();
		const sweep = await runHealthSweep(8);
		expect(sweep).toMatchObject({ checked: 22, reachable: 20, unreachable: 2 });
		const counts = await countByStatus();
		// app-11 and edge-03 refuse connections, app-15's key changed; app-19 was never accepted (not swept).
		expect(counts.UNREACHABLE).toBe(3);
		expect(counts.OUTDATED).toBeGreaterThan(0);
		expect(counts.UP_TO_DATE).toBeGreaterThan(counts.OUTDATED);

		const { runId, plan } = await triggerUpdate(systemActor, { dry_run: false, concurrency: 5 });
		// app-19 counts as OUTDATED (nothing known of it) but cannot be updated before an admin accepts its key.
		expect(plan.nodes.length).toBe(counts.OUTDATED - 1);
		expect(plan.excluded).toContainEqual(
			expect.objectContaining({ name: 'app-19', reason: 'not updated: its host key is not accepted yet' })
		);
		const run = await waitForRun(runId!, ['succeeded', 'failed'], 60_000);
		// app-07 fails its health check whatever it runs (the demo's sick node): it is the only one not updated.
		const notUpdated = run.tasks.filter((t) => t.state !== 'succeeded').map((t) => t.nodeName);
		expect(notUpdated.every((n) => n === 'app-07')).toBe(true);
		const after = await countByStatus();
		expect(after.OUTDATED).toBe(1);
		expect(after.UP_TO_DATE + after.FAILED + after.UNREACHABLE).toBe(23);
	}, 240_000);

	it('is scanned for system updates at start: security updates, reboots, holds and nodes without needrestart', async () => {
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		const fleet = await startDemoFleet(dataDir);
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		const scanned = await waitFor(
			'the demo scan',
			async () => {
				const rows = await db().select().from(sysNodeScans);
				const done = rows.filter((r) => r.scannedAt || r.lastError);
				// Every node with a pinned key: 20 reachable ones and app-11 and edge-03, which refuse (app-15's key
				// changed and app-19's was never accepted: the console does not connect to them).
				return done.length === 22 && done;
			},
			60_000
		);
		const ok = scanned.filter((r) => r.scannedAt);
		expect(ok).toHaveLength(20);
		expect(ok.filter((r) => r.securityCount > 0).length).toBeGreaterThan(5);
		expect(ok.filter((r) => r.pendingCount > r.securityCount).length).toBeGreaterThan(5);
		expect(ok.filter((r) => r.rebootRequired).length).toBeGreaterThanOrEqual(3);
		expect(ok.filter((r) => r.servicesToRestart === null).length).toBeGreaterThan(0);
		expect(ok.filter((r) => r.held.includes('postgresql-15')).length).toBeGreaterThan(0);
		expect(scanned.filter((r) => r.lastError)).toHaveLength(2);
	}, 90_000);

	it('opens on a signed release and a finished staged rollout of it, verified on the nodes', async () => {
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		const fleet = await startDemoFleet(dataDir);
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		await demoScansDone();
		const [release] = await db().select().from(releases).where(eq(releases.version, '1.4.0'));
		expect(release).toMatchObject({ version: '1.4.0', channel: 'stable', algorithm: 'ed25519' });
		expect(release!.verifiedBy).toMatch(/^ed25519:[0-9a-f]{16}$/);
		expect(release!.sha).toBe(fleet.origins.get('backend')!.commits.at(-1)!.sha);
		// The periodic driver's turns, taken by the test.
		const done = await waitFor(
			'the demo rollout to finish',
			async () => {
				await driveRollouts();
				const [r] = await db().select().from(rollouts);
				return r && ['completed', 'paused', 'failed'].includes(r.state) ? r : null;
			},
			60_000
		);
		expect(done.state).toBe('completed');
		expect(done.stages.map((s) => s.state)).toEqual(['done', 'done', 'done']);
		const members = await nodesOfRollout(done.id);
		expect(members.map((m) => `${m.nodeName}:${m.state}`).sort()).toEqual(
			['app-01', 'app-03', 'app-05', 'app-09', 'app-13', 'app-17'].map((n) => `${n}:succeeded`)
		);
		// The node runs the release's commit (read over SSH from the simulated host).
		const host = fleet.hosts.find((h) => h.name === 'app-05')!;
		const stored = readFileSync(path.join(dataDir, 'demo-fleet.json'), 'utf8');
		const { clientKey } = JSON.parse(openSecret(key, stored, 'demo-fleet')) as { clientKey: string };
		const conn = await connect({
			host: host.address,
			port: host.port,
			username: 'root',
			privateKey: clientKey,
			hostKeyFingerprint: host.hostKeyFingerprint
		});
		try {
			const head = await conn.exec(sh`git -C ${nodePaths.repo('backend')} rev-parse HEAD`);
			expect(head.stdout.trim()).toBe(release!.sha);
		} finally {
			conn.close();
		}

		// A restart neither signs the release again nor starts another rollout.
		await fleet.stop();
		const again = await startDemoFleet(dataDir);
		onTestFinished(() => again.stop());
		await again.checked;
		// The code release and the appliance release.
		expect(await db().select().from(releases)).toHaveLength(2);
		expect(await db().select().from(rollouts)).toHaveLength(1);
	}, 240_000);

	it('brings an appliance release whose image its simulated appliances take, verify, boot and commit', async () => {
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		const fleet = await startDemoFleet(dataDir);
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		await demoScansDone();
		const [release] = await db().select().from(releases).where(eq(releases.version, DEMO_APPLIANCE_RELEASE));
		const image = await imageOfRelease(release!.id);
		expect(image).toMatchObject({ state: 'complete', size: 6 * 1024 * 1024 });
		const appliances = ['edge-01', 'edge-02', 'edge-03', 'edge-04'];
		const before = new Map(appliances.map((n) => [n, slotsOf(fleet, n)]));
		const { id: runId } = await startPush(systemActor, { image_id: image!.id, nodes: appliances, concurrency: 4 });
		const run = await waitForRun(runId, ['succeeded', 'failed'], 180_000);
		// edge-03 refuses connections (the demo's unreachable appliance): the others take the image.
		expect(run.tasks.map((t) => `${t.nodeName}:${t.state}`).sort()).toEqual([
			'edge-01:succeeded',
			'edge-02:succeeded',
			'edge-03:failed',
			'edge-04:succeeded'
		]);
		for (const name of ['edge-01', 'edge-02', 'edge-04']) {
			const was = before.get(name)!;
			const now = slotsOf(fleet, name);
			const updated = was.active === 'a' ? 'b' : 'a';
			expect(now).toMatchObject({ active: updated, good: updated, next: updated });
			const host = fleet.hosts.find((h) => h.name === name)!;
			const bytes = bytesOf(host.model, `${nodePaths.slotDir}/slot-${updated}.img`);
			expect(createHash('sha256').update(bytes).digest('hex')).toBe(image!.sha256);
		}
		// The demo's link rate makes the upload take seconds: progress between nothing and all was reported.
		const progress = await db()
			.select({ data: events.data })
			.from(events)
			.where(and(eq(events.runId, runId), eq(events.type, 'appliance.update')));
		const partial = progress.filter(
			(e) => e.data.state === 'uploading' && Number(e.data.bytes) > 0 && Number(e.data.bytes) < image!.size
		);
		expect(partial.length).toBeGreaterThan(0);
	}, 240_000);

	it('rotates the keys of demo nodes for real, and a restart keeps them rotated', async () => {
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		const fleet = await startDemoFleet(dataDir);
		await fleet.checked;
		await demoScansDone();
		const rotated = ['app-01', 'app-02'];
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: rotated }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const r = await waitFor(
			'the rotation to settle',
			async () => {
				await driveKeyRotations();
				const now = await getKeyRotation(started.rotationId);
				return now.state !== 'running' ? now : null;
			},
			60_000
		);
		expect(r.state).toBe('completed');
		const [demoKey] = await db().select().from(credentials).where(eq(credentials.name, 'demo-fleet'));
		const nodeOf = async (name: string) => (await db().select().from(nodes).where(eq(nodes.name, name)))[0]!;
		const logins = async () =>
			Promise.all(
				rotated.map(async (name) => {
					const node = await nodeOf(name);
					return [await tryLogin(node, demoKey!.id), await tryLogin(node, r.newCredentialId!)];
				})
			);
		const afterRotation = await logins();
		expect(afterRotation.map(([old]) => old)).toEqual([expect.stringMatching(/^auth/), expect.stringMatching(/^auth/)]);
		expect(afterRotation.map(([, fresh]) => fresh)).toEqual([null, null]);
		// Another demo node was not in the rotation: the demo key still logs in there.
		expect(await tryLogin(await nodeOf('app-03'), demoKey!.id)).toBeNull();

		await fleet.stop();
		const again = await startDemoFleet(dataDir);
		onTestFinished(() => again.stop());
		await again.checked;
		expect(await logins()).toEqual(afterRotation);
		// The first check after the restart reached the rotated nodes with their new credential.
		for (const name of rotated) expect(await nodeOf(name)).toMatchObject({ reachable: true, lastError: null });
	}, 240_000);

	it('provisions a demo server for its billing role: all six phases do their work on the simulated node', async () => {
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		onTestFinished(() => stopEngine());
		const fleet = await startDemoFleet(dataDir);
		onTestFinished(() => fleet.stop());
		await fleet.checked;
		await demoScansDone();
		const [node] = await db().select().from(nodes).where(eq(nodes.name, 'app-04'));
		expect(node!.roles).toEqual(['worker']);
		const provision = async () => {
			const { runId } = await startProvisioning(systemActor, node!.id, provisionSchema.parse({ role: 'billing' }));
			return waitForRun(runId, ['succeeded', 'failed'], 60_000);
		};
		const run = await provision();
		// A failure says why in the test's output.
		expect(run.state, run.tasks[0]?.error ?? '').toBe('succeeded');
		expect(run.tasks[0]!.steps.map((s) => `${s.name}:${s.state}`)).toEqual(
			['clean', 'deploy', 'system_deps', 'secrets', 'services', 'verify'].map((p) => `${p}:succeeded`)
		);
		const model = fleet.hosts.find((h) => h.name === 'app-04')!.model;
		// The role's repository cloned at its latest commit; the worker role the node had is gone.
		expect(model.repos.get(nodePaths.repo('billing'))?.head).toBe(demoProvisionedOrigin().commits.at(-1)!.sha);
		expect(model.repos.has(nodePaths.repo('worker'))).toBe(false);
		expect(model.accounts.users.get('billing')).toMatchObject({ home: '/nonexistent', shell: '/usr/sbin/nologin' });
		expect(model.dirs.get('/etc/billing')).toEqual({ mode: 0o750, owner: 'root', group: 'billing' });
		expect(model.meta.get('/etc/billing/billing.env')).toEqual({ mode: 0o640, owner: 'root', group: 'billing' });
		expect(model.files.get('/etc/billing/billing.env')).toMatch(
			/^DATABASE_URL=postgres:\/\/billing:[0-9a-f]{24}@db\.demo\.flotilla\.invalid\/billing\nPORT=8081\n$/
		);
		expect(model.files.get('/etc/systemd/system/billing.service')).toContain(
			'EnvironmentFile=/etc/billing/billing.env'
		);
		expect(model.units.get('billing.service')).toBe('active');
		expect(model.enabled.has('billing.service')).toBe(true);
		const [after] = await db().select().from(nodes).where(eq(nodes.id, node!.id));
		expect(after!.roles).toEqual(['billing']);
		expect(await provisioningOfNode(node!.id)).toMatchObject([{ role: 'billing', lastError: null }]);

		// Provisioning it again changes nothing on the node.
		const files = new Map(model.files);
		const again = await provision();
		expect(again.state).toBe('succeeded');
		expect(model.files).toEqual(files);
	}, 240_000);
});

function slotsOf(fleet: { hosts: { name: string; model: { files: Map<string, string> } }[] }, name: string) {
	const files = fleet.hosts.find((h) => h.name === name)!.model.files;
	const fact = (f: string) => files.get(`${nodePaths.slotDir}/${f}`)?.trim();
	return { active: fact('active'), next: fact('next'), good: fact('good') };
}
