import { createHash, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { useImageStore } from '../../src/lib/server/appliances/images';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes, type ApplianceImage, type Rollout } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { driveRollouts, rollbackRollout } from '../../src/lib/server/rollouts/driver';
import { createRollout, getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { freshPglite } from '../support/databases';
import { waitFor } from '../support/engine';
import { signedImageRelease } from '../support/appliances';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * The fleet rollback of an appliance release on real sshd hosts with the appliance's slot helper: every
 * appliance the rollout updated boots the slot it ran before, which must pass its gate again, latest stage
 * first. What happened is read from the hosts' own slot files.
 */

let bed: Testbed;
let handle: DatabaseHandle;
let workDir: string;
let signingKey: KeyObject;
const names = () => bed.hosts.map((h) => h.name);

const imageRelease = (version: string) => signedImageRelease(signingKey, version, 200_000);

async function driveUntil(id: string, states: Rollout['state'][]): Promise<Rollout> {
	return waitFor(
		`rollout in ${states.join('/')}`,
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return states.includes(r.state) ? r : null;
		},
		240_000
	);
}

const sha256Of = async (h: TestHost, slot: string) =>
	createHash('sha256')
		.update(await readFile(join(h.root, `boot/flotilla/slot-${slot}.img`)))
		.digest('hex');

/** Rolls an image out to all four in two stages (2 + 2) and waits until it completed. */
async function rollOut(version: string): Promise<{ rollout: Rollout; image: ApplianceImage }> {
	const image = await imageRelease(version);
	const { rollout } = await createRollout(
		systemActor,
		createRolloutSchema.parse({
			release_id: image.releaseId,
			target: { nodes: names() },
			strategy: 'staged',
			stages: [
				{ percent: 50, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			],
			concurrency: 4
		})
	);
	const done = await driveUntil(rollout!.id, ['completed', 'paused', 'failed']);
	expect(done.state).toBe('completed');
	return { rollout: done, image };
}

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-appliance-rollback-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 4, firstHost: 10 });
	handle = await freshPglite();
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
	for (const h of bed.hosts) {
		await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
		await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), pem);
	}
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	await db()
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
		);
	await startEngine({ concurrency: 8, leaseMs: 3_000, sweepMs: 500, shutdownGraceMs: 0 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await bed?.stop();
	useImageStore(undefined);
	await rm(workDir, { recursive: true, force: true });
});

describe('fleet rollback of an appliance release', () => {
	it('every appliance the rollout updated boots and commits its previous slot again, latest stage first', async () => {
		const before = new Map(await Promise.all(bed.hosts.map(async (h) => [h.name, await bed.slotState(h)] as const)));
		const oldImage = await sha256Of(bed.hosts[0]!, 'a');
		const { rollout, image } = await rollOut('3.0.0');
		for (const h of bed.hosts) {
			expect(await bed.slotState(h)).toMatchObject({ active: 'b', good: 'b' });
			expect(await sha256Of(h, 'b')).toBe(image.sha256);
		}
		const rolling = await rollbackRollout(systemActor, rollout.id);
		expect(rolling.state).toBe('rolling_back');
		const done = await driveUntil(rollout.id, ['rolled_back', 'failed']);
		expect(done.state).toBe('rolled_back');
		expect(done.reason).toBe('fleet rollback: 4 node(s) back on what they ran before');
		for (const h of bed.hosts) {
			// On the host: the old slot booted and committed, its image the one it ran before, two more boots.
			expect(await bed.slotState(h)).toEqual({
				active: 'a',
				next: 'a',
				good: 'a',
				tries: 0,
				boots: before.get(h.name)!.boots + 2
			});
			expect(await sha256Of(h, 'a')).toBe(oldImage);
		}
		const rows = await nodesOfRollout(rollout.id);
		expect(rows.map((r) => r.state)).toEqual(['reverted', 'reverted', 'reverted', 'reverted']);
		// Reverse stage order: the second stage's appliances went back first, each before any of the first's began.
		const run = await getRun(done.rollbackRunId!);
		expect(run.kind).toBe('appliance-revert');
		const stageOf = new Map(rows.map((r) => [r.nodeName, r.stage]));
		const byStage = (stage: number) => run.tasks.filter((t) => stageOf.get(t.nodeName) === stage);
		const lastOfSecond = Math.max(...byStage(1).map((t) => t.endedAt!.getTime()));
		const firstOfFirst = Math.min(...byStage(0).map((t) => t.startedAt!.getTime()));
		expect(byStage(1)).toHaveLength(2);
		expect(lastOfSecond).toBeLessThanOrEqual(firstOfFirst);
	}, 480_000);

	it('an appliance whose previous slot fails its gate goes back to the release’s slot; the rollback says so', async () => {
		const { rollout, image } = await rollOut('3.1.0');
		const sick = bed.hosts[3]!;
		const fine = bed.hosts.slice(0, 3);
		for (const h of bed.hosts) expect(await bed.slotState(h)).toMatchObject({ active: 'b', good: 'b' });
		await bed.setFault(sick, 'fail-health');
		try {
			await rollbackRollout(systemActor, rollout.id);
			const done = await driveUntil(rollout.id, ['rolled_back', 'failed']);
			expect(done.state).toBe('failed');
			expect(done.reason).toMatch(/^fleet rollback: 1 of 4 node\(s\) could not go back \(run #\d+\)$/);
		} finally {
			await bed.clearFaults(sick);
		}
		// Never left on a slot that did not pass its gate: back on the release's slot b, committed.
		expect(await bed.slotState(sick)).toMatchObject({ active: 'b', next: 'b', good: 'b', tries: 0 });
		expect(await sha256Of(sick, 'b')).toBe(image.sha256);
		for (const h of fine) expect(await bed.slotState(h)).toMatchObject({ active: 'a', next: 'a', good: 'a' });
		const rows = await nodesOfRollout(rollout.id);
		const sickRow = rows.find((r) => r.nodeName === sick.name)!;
		expect(sickRow.state).toBe('revert_rolled_back');
		expect(sickRow.error).toMatch(/health gate failed: slot a not committed/);
	}, 480_000);
});
