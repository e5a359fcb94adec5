import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { windowSchema } from '../../src/lib/schemas/system-updates';
import { badReleaseFor, clearBadRelease, listBadReleases } from '../../src/lib/server/appliances/fallbacks';
import { declareImage, imagePath, receiveChunk, useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import {
	applianceImages,
	applianceUpdates,
	events,
	nodes,
	type ApplianceImage,
	type Node,
	type Rollout
} from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, metricsRegistry, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { driveRollouts, resumeRollout, rollbackRollout } from '../../src/lib/server/rollouts/driver';
import { createRollout, getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { sh } from '../../src/lib/server/ssh/shell';
import { saveWindow } from '../../src/lib/server/sysupdates/windows';
import { signedRelease } from '../support/appliances';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { sshAsRoot } from '../support/testbed-nodes';
import { startTestbed, type SlotState, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * A/B appliance updates end to end on 29 real sshd hosts (127.0.1.10–38), each with the appliance's own slot
 * helper (appliance/flotilla-slot) and the release key installed as an appliance has them. What happened on an
 * appliance is read from its own files: its slot state, its images, its boot counter.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let signingKey: KeyObject;
let otherKey: KeyObject;
const nodeOf = new Map<string, Node>();
const host = (i: number) => bed.hosts[i] as TestHost;
const node = (i: number) => nodeOf.get(host(i).name)!;
let workDir: string;
// No grace at shutdown: a stopped console leaves its tasks for recovery at once, as a killed one does.
const ENGINE = { concurrency: 30, leaseMs: 3_000, sweepMs: 500, shutdownGraceMs: 0 };

const ssh = async (h: TestHost, script: string) => (await sshAsRoot(bed, h, script)).stdout;

const release = (version: string) => signedRelease(signingKey, version);

const signImage = (sha256: string, key = signingKey) => sign(null, Buffer.from(sha256), key).toString('hex');

/** A release with an image of `size` random bytes, uploaded to the console in chunks. */
async function imageRelease(version: string, size = 1 << 20): Promise<ApplianceImage> {
	const r = await release(version);
	const file = join(workDir, `${version}.img`);
	const hash = createHash('sha256');
	await writeFile(file, '');
	for (let left = size; left > 0; left -= 1 << 20) {
		const chunk = randomBytes(Math.min(left, 1 << 20));
		hash.update(chunk);
		await writeFile(file, chunk, { flag: 'a' });
	}
	const sha256 = hash.digest('hex');
	const image = await declareImage(systemActor, { release_id: r.id, sha256, size, signature: signImage(sha256) });
	const half = Math.floor(size / 2);
	const part = (start: number, end: number) =>
		Readable.toWeb(createReadStream(file, { start, end: end - 1 })) as ReadableStream<Uint8Array>;
	await receiveChunk(systemActor, image.id, 0, part(0, half));
	return receiveChunk(systemActor, image.id, half, part(half, size));
}

async function updateOf(runId: string, nodeId: string) {
	const [row] = await db()
		.select()
		.from(applianceUpdates)
		.where(and(eq(applianceUpdates.runId, runId), eq(applianceUpdates.nodeId, nodeId)));
	return row!;
}

async function statesOf(runId: string, nodeId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.runId, runId), eq(events.nodeId, nodeId), eq(events.type, 'appliance.update')))
		.orderBy(asc(events.id));
	return rows.map((r) => String(r.data.state)).filter((s, i, all) => s !== all[i - 1]);
}

async function logOf(runId: string): Promise<string> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.runId, runId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => l.t)).join('\n');
}

const slotFile = (h: TestHost, slot: string) => join(h.root, 'boot/flotilla', `slot-${slot}.img`);
const sha256Of = async (path: string) =>
	createHash('sha256')
		.update(await readFile(path))
		.digest('hex');

async function push(i: number, imageId: string, extra: Record<string, unknown> = {}) {
	return startPush(systemActor, { image_id: imageId, nodes: [host(i).name], ...extra });
}

async function driveUntil(id: string, states: Rollout['state'][], timeoutMs = 240_000): Promise<Rollout> {
	return waitFor(
		`rollout in ${states.join('/')}`,
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return states.includes(r.state) ? r : null;
		},
		timeoutMs
	);
}

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-appliances-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 29, firstHost: 10 });
	pg = await freshPostgres('flotilla_appliances');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	otherKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	// The appliance trusts the release key from its installation on, not from the console.
	const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
	for (const h of bed.hosts) {
		await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
		await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), pem);
		await ssh(h, 'systemctl start appliance');
	}
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				kind: 'appliance' as const,
				labels: { hardware: 't640' },
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning();
	for (const r of rows) nodeOf.set(r.name, r);
	await startEngine(ENGINE);
}, 180_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
	useImageStore(undefined);
	await rm(workDir, { recursive: true, force: true });
});

describe('the A/B flow on one appliance', () => {
	it('fails before any reboot on a sha256 mismatch, a bad signature or a version below the minimum; the active slot untouched', async () => {
		const h = host(25);
		const before = await bed.slotState(h);
		const activeImage = await sha256Of(slotFile(h, before.active));

		// A console whose stored image changed after its checks: it sends bytes the appliance does not accept.
		const corrupted = await imageRelease('1.1.0');
		const stored = imagePath(corrupted.id);
		const bytes = await readFile(stored);
		bytes[10] = bytes[10]! ^ 0xff;
		await writeFile(stored, bytes);
		// A console that signs with a key the appliance does not trust.
		const badSigned = await imageRelease('1.2.0');
		await db()
			.update(applianceImages)
			.set({ signature: signImage(badSigned.sha256, otherKey) })
			.where(eq(applianceImages.id, badSigned.id));
		const old = await imageRelease('1.3.0');

		const untouched = async () => {
			const after = await bed.slotState(h);
			expect(after).toEqual({ ...before, active: 'a', next: 'a', good: 'a' });
			expect(after.boots).toBe(before.boots);
			expect(await sha256Of(slotFile(h, 'a'))).toBe(activeImage);
		};

		// The console checks what arrived against the image's signed sha256 and stops at the upload.
		const refused = await push(25, corrupted.id);
		const failedUpload = await waitForRun(refused.id, ['failed'], 60_000);
		expect(failedUpload.tasks[0]!.error).toMatch(
			new RegExp(`^upload: /\\S+ on \\S+ has sha256 [0-9a-f]{64}, expected ${corrupted.sha256}$`)
		);
		expect((await updateOf(refused.id, node(25).id)).state).toBe('failed');
		expect(await statesOf(refused.id, node(25).id)).toEqual(['pending', 'uploading', 'failed']);
		await untouched();
		// A console that skipped that check (a compromised one) still cannot get past the appliance's own: the
		// bytes it sent sit in the standby slot, and the appliance refuses them against the signed sha256.
		const verdict = await ssh(
			h,
			sh`flotilla-slot verify b ${corrupted.sha256} ${corrupted.signature} 1.1.0 2>&1; echo "exit $?"`.script
		);
		expect(verdict).toMatch(
			new RegExp(`sha256 mismatch: slot b holds [0-9a-f]{64}, expected ${corrupted.sha256}\\nexit [1-9]`)
		);
		await untouched();

		const expected: [ApplianceImage, RegExp][] = [
			[badSigned, /bad signature: the image's sha256 is signed by none of the release keys/],
			[old, /version 1\.3\.0 is below the minimum version 2\.0\.0 \(rollback protection\)/]
		];
		for (const [image, reason] of expected) {
			if (image === old) await writeFile(join(h.root, 'etc/flotilla/min-version'), '2.0.0\n');
			const run = await push(25, image.id);
			const done = await waitForRun(run.id, ['failed'], 60_000);
			expect(done.tasks[0]!.error).toMatch(reason);
			const row = await updateOf(run.id, node(25).id);
			expect(row.state).toBe('failed');
			expect(await statesOf(run.id, node(25).id)).toEqual(['pending', 'uploading', 'verifying', 'failed']);
			await untouched();
		}
		await writeFile(join(h.root, 'etc/flotilla/min-version'), '1.0.0\n');
	}, 180_000);

	it('uploads, verifies on the appliance, reboots, passes the gate and commits: succeeded only after the gate', async () => {
		const h = host(25);
		const image = await imageRelease('1.4.0');
		const before = await bed.slotState(h);
		const run = await push(25, image.id);
		await waitForRun(run.id, ['succeeded'], 90_000);
		expect(await statesOf(run.id, node(25).id)).toEqual([
			'pending',
			'uploading',
			'verifying',
			'ready',
			'rebooting',
			'verifying_health',
			'succeeded'
		]);
		const after = await bed.slotState(h);
		expect(after).toMatchObject({ active: 'b', next: 'b', good: 'b', tries: 0 });
		expect(after.boots).toBe(before.boots + 1);
		expect(await sha256Of(slotFile(h, 'b'))).toBe(image.sha256);
		const row = await updateOf(run.id, node(25).id);
		expect(row).toMatchObject({ state: 'succeeded', bytes: image.size, total: image.size, fromSlot: 'a', toSlot: 'b' });
		const metrics = await metricsRegistry.metrics();
		expect(metrics).toMatch(/^update_download_seconds_count [1-9]/m);
		expect(metrics).toMatch(/^update_reboot_seconds_count [1-9]/m);
	}, 120_000);

	it('resumes an upload whose connection dropped mid-file from what the appliance already has', async () => {
		const h = host(26);
		const image = await imageRelease('1.5.0', 192 << 20);
		const run = await push(26, image.id);
		const target = slotFile(h, 'b');
		// The appliance goes away while the standby slot is partly written, and comes back.
		await waitFor(
			'a partly written standby slot',
			async () => {
				const size = await stat(target).then(
					(s) => s.size,
					() => 0
				);
				return size > image.size / 4 && size < image.size / 2;
			},
			60_000
		);
		await bed.stopHost(h);
		await bed.startHost(h);
		await waitForRun(run.id, ['succeeded'], 180_000);
		const log = await logOf(run.id);
		expect(log).toMatch(/the connection dropped during the upload/);
		const resumed = Number(/resumed the upload at byte (\d+)/.exec(log)?.[1]);
		expect(resumed).toBeGreaterThan(image.size / 8);
		expect(await sha256Of(target)).toBe(image.sha256);
		expect((await bed.slotState(h)).good).toBe('b');
	}, 300_000);

	it('waits for the maintenance window; an appliance that asks to skip it defers the reboot', async () => {
		const h = host(28);
		const image = await imageRelease('1.6.0');
		const now = new Date();
		const otherDay = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'][
			(now.getUTCDay() + 3) % 7
		]!;
		await saveWindow(
			systemActor,
			windowSchema.parse({
				scope: 'node',
				target: node(28).id,
				start: '02:00',
				end: '03:00',
				time_zone: 'UTC',
				days: [otherDay]
			})
		);
		const before = await bed.slotState(h);
		// Looking every second for the test: the default is 30 s.
		const run = await push(28, image.id, { window: 'wait', window_poll_seconds: 1 });
		await waitFor(
			'waiting for the window',
			async () => /waiting for the maintenance window/.test(await logOf(run.id)),
			60_000
		);
		expect((await updateOf(run.id, node(28).id)).state).toBe('ready');
		expect((await bed.slotState(h)).boots).toBe(before.boots);
		await ssh(h, 'flotilla-slot --skip-window');
		const all = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
		await saveWindow(
			systemActor,
			windowSchema.parse({
				scope: 'node',
				target: node(28).id,
				start: '00:00',
				end: '23:59',
				time_zone: 'UTC',
				days: all
			})
		);
		await waitFor(
			'the skip seen',
			async () => /asked to skip this maintenance window/.test(await logOf(run.id)),
			120_000
		);
		expect((await bed.slotState(h)).boots).toBe(before.boots);
		expect((await getRun(run.id)).state).toBe('running');
		await ssh(h, 'flotilla-slot --skip-window --cancel');
		await waitForRun(run.id, ['succeeded'], 120_000);
		const log = await logOf(run.id);
		expect(log.indexOf('asked to skip')).toBeLessThan(log.indexOf('inside the maintenance window: rebooting'));
		expect((await bed.slotState(h)).good).toBe('b');
	}, 300_000);
});

describe('fallbacks seen fleet-wide', () => {
	it('a boot-looping image falls back after 3 failed boots with the console stopped; the console records it when back', async () => {
		const h = host(27);
		const image = await imageRelease('1.7.0');
		await bed.setFault(h, 'fail-boot', 'b');
		const before = await bed.slotState(h);
		const run = await push(27, image.id);
		// The console stops once the appliance really rebooted into slot b (its first boot of it is counted).
		await waitFor('the first boot of slot b', async () => (await bed.slotState(h)).boots > before.boots, 60_000);
		await stopEngine();
		let restarted = false;
		let fell: SlotState | undefined;
		try {
			// Without the console, the appliance's own boot logic: slot b three times, then back to slot a.
			fell = await waitFor(
				'the appliance back on slot a',
				async () => {
					const s = await bed.slotState(h);
					return s.boots >= before.boots + 4 && s.active === 'a' ? s : null;
				},
				60_000
			);
			expect(fell).toMatchObject({ active: 'a', next: 'a', good: 'a', tries: 0, boots: before.boots + 4 });
			expect((await updateOf(run.id, node(27).id)).state).toBe('rebooting');
			await startEngine(ENGINE);
			restarted = true;
		} finally {
			if (!restarted) await startEngine(ENGINE);
		}
		const done = await waitForRun(run.id, ['failed'], 60_000);
		expect(done.tasks[0]!.state).toBe('rolled_back');
		const row = await updateOf(run.id, node(27).id);
		expect(row.state).toBe('rolled_back');
		expect(row.fallback).toMatch(/slot b was booted 3 times without passing the health gate; fell back to slot a/);
		const mark = await badReleaseFor(image.releaseId, node(27));
		expect(mark).toMatchObject({ hardware: 't640', nodeName: h.name });

		// Not offered again to that hardware until an operator clears the mark.
		await bed.clearFaults(h);
		const again = await push(27, image.id);
		const skipped = await waitForRun(again.id, ['succeeded', 'failed'], 60_000);
		expect(skipped.tasks[0]!.state).toBe('skipped');
		expect(skipped.tasks[0]!.error).toMatch(/marked bad for hardware t640/);
		expect((await bed.slotState(h)).boots).toBe(fell!.boots);
		const [listed] = (await listBadReleases()).filter((m) => m.mark.releaseId === image.releaseId);
		await clearBadRelease(systemActor, listed!.mark.id);
		const cleared = await push(27, image.id);
		await waitForRun(cleared.id, ['succeeded'], 90_000);
		expect(await bed.slotState(h)).toMatchObject({ active: 'b', good: 'b' });
	}, 240_000);
});

describe('appliance releases roll out with the rollout stages, thresholds and controls', () => {
	it('20 appliances staged 5/25/100: one whose gate fails goes back to its good slot and is rolled_back; the rollout goes on', async () => {
		const image = await imageRelease('2.0.0');
		const names = bed.hosts.slice(0, 20).map((h) => h.name);
		const input = createRolloutSchema.parse({
			release_id: image.releaseId,
			target: { nodes: names },
			strategy: 'canary',
			stages: [
				{ percent: 5, bake_seconds: 0 },
				{ percent: 25, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			],
			// One failure in ten finished is 10%, not over the threshold: the stage is judged on enough nodes.
			failure_threshold_percent: 10,
			min_finished_nodes: 10,
			concurrency: 5
		});
		const { preview } = await createRollout(systemActor, { ...input, dry_run: true });
		expect(preview.stages.map((s) => s.nodes.length)).toEqual([1, 4, 15]);
		const bad = bed.hosts.find((h) => h.name === preview.stages[2]!.nodes[0]!.name)!;
		await bed.setFault(bad, 'fail-health');
		const { rollout } = await createRollout(systemActor, { ...input, id: preview.id });
		const done = await driveUntil(rollout!.id, ['completed', 'paused', 'failed'], 300_000);
		expect(done.state).toBe('completed');
		expect(done.reason).toMatch(/1 node\(s\) failed/);
		const rows = await nodesOfRollout(rollout!.id);
		expect(rows.map((r) => r.stage).sort()).toEqual([0, ...Array(4).fill(1), ...Array(15).fill(2)]);
		for (const r of rows) {
			const h = bed.hosts.find((x) => x.name === r.nodeName)!;
			const slots = await bed.slotState(h);
			if (h === bad) {
				expect(r.state).toBe('rolled_back');
				expect(r.error).toMatch(/health gate failed: slot b not committed/);
				expect(slots).toMatchObject({ active: 'a', next: 'a', good: 'a' });
			} else {
				expect(r.state).toBe('succeeded');
				expect(slots).toMatchObject({ active: 'b', good: 'b' });
				expect(await sha256Of(slotFile(h, 'b'))).toBe(image.sha256);
			}
		}
		await bed.clearFaults(bad);
	}, 360_000);

	it('two of five failing in a stage over a 10% threshold pause the rollout', async () => {
		const image = await imageRelease('2.1.0');
		const five = bed.hosts.slice(20, 25);
		for (const h of five.slice(0, 2)) await bed.setFault(h, 'fail-health');
		const { rollout } = await createRollout(
			systemActor,
			createRolloutSchema.parse({
				release_id: image.releaseId,
				target: { nodes: five.map((h) => h.name) },
				strategy: 'immediate',
				stages: [{ percent: 100, bake_seconds: 0 }],
				failure_threshold_percent: 10,
				min_finished_nodes: 3,
				concurrency: 5
			})
		);
		const paused = await driveUntil(rollout!.id, ['paused', 'completed'], 240_000);
		expect(paused.state).toBe('paused');
		// Judged as nodes finish: the first failure among three or more finished already trips 10%.
		expect(paused.reason).toMatch(/[12] of [3-5] finished nodes failed \(\d+% > the 10% threshold\)/);
		// The stage's five started together; the pause stops new ones, the running ones end on their own.
		const back = await waitFor(
			'both failing appliances rolled back',
			async () => {
				const rows = await nodesOfRollout(rollout!.id);
				const done = rows.every((r) => ['succeeded', 'rolled_back'].includes(r.state));
				return done ? rows.filter((r) => r.state === 'rolled_back').map((r) => r.nodeName) : null;
			},
			120_000
		);
		expect(back.sort()).toEqual(
			five
				.slice(0, 2)
				.map((h) => h.name)
				.sort()
		);
		for (const h of five.slice(0, 2)) await bed.clearFaults(h);
		await resumeRollout(systemActor, rollout!.id);
		const after = await driveUntil(rollout!.id, ['completed', 'paused'], 240_000);
		expect(after.state).toBe('completed');
		// A fleet rollback takes the three it updated back to slot a; the two that never left it are not touched.
		const rolling = await rollbackRollout(systemActor, rollout!.id);
		expect(rolling.state).toBe('rolling_back');
		const rolledBack = await driveUntil(rollout!.id, ['rolled_back', 'failed'], 240_000);
		expect(rolledBack.state).toBe('rolled_back');
		const run = await getRun(rolledBack.rollbackRunId!);
		expect(run.tasks.map((t) => t.nodeName).sort()).toEqual(
			five
				.slice(2)
				.map((h) => h.name)
				.sort()
		);
		for (const h of five) expect(await bed.slotState(h)).toMatchObject({ active: 'a', next: 'a', good: 'a', tries: 0 });
		const rows = await nodesOfRollout(rollout!.id);
		expect(rows.map((r) => `${r.nodeName}:${r.state}`).sort()).toEqual(
			five.map((h, i) => `${h.name}:${i < 2 ? 'rolled_back' : 'reverted'}`).sort()
		);
	}, 480_000);
});
