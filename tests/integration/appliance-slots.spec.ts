import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { applianceOverview } from '../../src/lib/server/appliances/slots';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes, type ApplianceImage, type Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { runHealthSweep } from '../../src/lib/server/fleet/sweep';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { signedImageRelease } from '../support/appliances';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * What the console learns of an appliance's slots (docs/appliances.md, "The appliance's page"): from the health
 * sweep before any update, and from the A/B flow's reports, including the gate the appliance ran. One real
 * appliance (127.0.1.88) with the slot helper; a server (127.0.1.89) has no slots.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let workDir: string;
let signingKey: KeyObject;
let appliance: Node;
let server: Node;
let h: TestHost;

const imageRelease = (version: string) => signedImageRelease(signingKey, version, 200_000);

async function push(image: ApplianceImage) {
	const run = await startPush(systemActor, { image_id: image.id, nodes: [appliance.name], reboot_timeout_seconds: 60 });
	await waitForRun(run.id, ['succeeded', 'failed'], 120_000);
	return getRun(run.id);
}

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-appliance-slots-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 2, firstHost: 88 });
	h = bed.hosts[0]!;
	pg = await freshPostgres('flotilla_appliance_slots');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
	await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), pub.export({ format: 'pem', type: 'spki' }));
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((x, i) => ({
				name: x.name,
				host: x.address,
				port: x.port,
				credentialId: cred.id,
				kind: i === 0 ? ('appliance' as const) : ('server' as const),
				labels: { hardware: 't640' },
				hostKeyFingerprint: x.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning();
	[appliance, server] = rows as [Node, Node];
	await startEngine({ concurrency: 4, leaseMs: 3_000, sweepMs: 500, shutdownGraceMs: 0 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
	useImageStore(undefined);
	if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe("an appliance's slots as the console learns them", () => {
	it('knows nothing before a report; the health sweep reads the slots of appliances only', async () => {
		expect((await applianceOverview(appliance.id)).slots).toBeNull();
		const swept = await runHealthSweep(2);
		expect(swept).toMatchObject({ checked: 2, reachable: 2, appliances_fallen_back: 0 });
		const { slots, updates } = await applianceOverview(appliance.id);
		expect(updates).toEqual([]);
		expect(slots).toMatchObject({ active: 'a', next: 'a', good: 'a', tries: 0, fallback: null, last_gate: null });
		// The testbed installs both slots' images by hand: neither was verified by the appliance.
		expect(slots!.slots.map((s) => [s.slot, s.active, s.next_boot, s.good, s.image])).toEqual([
			['a', true, true, true, null],
			['b', false, false, false, null]
		]);
		// A server is swept too, but has no slots.
		expect(await applianceOverview(server.id)).toMatchObject({
			node: { kind: 'server' },
			slots: null,
			updates: [],
			fallbacks: []
		});
	}, 60_000);

	it('after an update: the new slot active and committed with the verified image, the gate passed, the run linked', async () => {
		const image = await imageRelease('2.0.0');
		const run = await push(image);
		expect(run.state).toBe('succeeded');
		const { slots, updates, fallbacks } = await applianceOverview(appliance.id);
		expect(slots).toMatchObject({ active: 'b', next: 'b', good: 'b', tries: 0 });
		expect(slots!.slots[1]).toEqual({
			slot: 'b',
			active: true,
			next_boot: true,
			good: true,
			image: { sha256: image.sha256, version: '2.0.0' }
		});
		expect(slots!.last_gate).toMatchObject({ slot: 'b', passed: true, failed_checks: [] });
		expect(updates).toHaveLength(1);
		expect(updates[0]).toMatchObject({
			run_id: run.id,
			run_number: run.number,
			version: '2.0.0',
			state: 'succeeded',
			from_slot: 'a',
			to_slot: 'b',
			bytes: image.size,
			total: image.size
		});
		expect(fallbacks).toEqual([]);
		// Each report the flow read reached the pages as an event of this appliance.
		const seen = await db()
			.select({ id: events.id })
			.from(events)
			.where(and(eq(events.type, 'appliance.slots'), eq(events.nodeId, appliance.id)))
			.orderBy(asc(events.id));
		expect(seen.length).toBeGreaterThanOrEqual(3);
	}, 180_000);

	it('a gate that fails is kept with the checks that failed, and the update shows rolled_back', async () => {
		const image = await imageRelease('3.0.0');
		await bed.setFault(h, 'fail-health');
		try {
			const run = await push(image);
			expect(run.tasks[0]!.state).toBe('rolled_back');
		} finally {
			await bed.clearFaults(h);
		}
		const { slots, updates } = await applianceOverview(appliance.id);
		// Back on b, committed; the failed gate was slot a's (the new image's), with the check that failed.
		expect(slots).toMatchObject({ active: 'b', next: 'b', good: 'b' });
		expect(slots!.last_gate).toMatchObject({ slot: 'a', passed: false, failed_checks: ['10-appliance'] });
		expect(slots!.slots[0]!.image).toEqual({ sha256: image.sha256, version: '3.0.0' });
		expect(updates.map((u) => [u.version, u.state])).toEqual([
			['3.0.0', 'rolled_back'],
			['2.0.0', 'succeeded']
		]);
	}, 180_000);
});
