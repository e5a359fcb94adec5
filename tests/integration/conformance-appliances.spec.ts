import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { declareImage, receiveChunk, useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import {
	applianceImages,
	applianceUpdates,
	events,
	nodes,
	type ApplianceImage,
	type Node
} from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { bytesOf } from '../../src/lib/server/sim/host';
import { startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';
import { installSlots } from '../../src/lib/server/sim/slots';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { signedRelease } from '../support/appliances';
import { freshPglite } from '../support/databases';
import { waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * The A/B appliance flow run by the console's own engine against a real appliance (an sshd testbed host with
 * appliance/flotilla-slot) and a simulated one (the demo fleet's kind), scenario by scenario: the states each
 * update goes through, how it ends, and what the appliance's slot helper reports afterwards must agree, so the
 * demo's appliances cannot drift from real ones.
 */

let bed: Testbed;
let sim: SimulatedHost;
let handle: DatabaseHandle;
let workDir: string;
let signingKey: KeyObject;
let otherKey: KeyObject;
let real: TestHost;
const nodeOf: Record<'real' | 'simulated', Node> = {} as never;

const release = (version: string) => signedRelease(signingKey, version);

const signImage = (sha256: string, key: KeyObject) => sign(null, Buffer.from(sha256), key).toString('hex');

/**
 * A release whose image is `size` random bytes (not UTF-8: the simulator must keep bytes as bytes). With
 * `signedBy`, the stored signature is replaced after the console accepted the image, as a compromised console
 * could: the appliance must still refuse it.
 */
async function imageRelease(version: string, signedBy?: KeyObject, size = 300_000): Promise<ApplianceImage> {
	const r = await release(version);
	const bytes = randomBytes(size);
	const sha256 = createHash('sha256').update(bytes).digest('hex');
	const declared = await declareImage(systemActor, {
		release_id: r.id,
		sha256,
		size,
		signature: signImage(sha256, signingKey)
	});
	const image = await receiveChunk(
		systemActor,
		declared.id,
		0,
		Readable.toWeb(Readable.from([bytes])) as ReadableStream<Uint8Array>
	);
	if (!signedBy) return image;
	const [forged] = await db()
		.update(applianceImages)
		.set({ signature: signImage(sha256, signedBy) })
		.where(eq(applianceImages.id, image.id))
		.returning();
	return forged!;
}

async function statesOf(runId: string, nodeId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.runId, runId), eq(events.nodeId, nodeId), eq(events.type, 'appliance.update')))
		.orderBy(asc(events.id));
	return rows.map((r) => String(r.data.state)).filter((s, i, all) => s !== all[i - 1]);
}

async function slotReport(which: 'real' | 'simulated'): Promise<string> {
	const target =
		which === 'real'
			? { host: real.address, port: real.port, hostKeyFingerprint: real.hostKeyFingerprint }
			: { host: sim.address, port: sim.port, hostKeyFingerprint: sim.hostKeyFingerprint };
	const conn = await connect({ ...target, username: 'root', privateKey: bed.clientPrivateKey });
	try {
		return (await conn.exec(sh`flotilla-slot report`)).stdout;
	} finally {
		conn.close();
	}
}

async function sha256OfSlot(which: 'real' | 'simulated', slot: string): Promise<string> {
	const path = `/boot/flotilla/slot-${slot}.img`;
	const bytes = which === 'real' ? await readFile(join(real.root, path)) : bytesOf(sim.model, path);
	return createHash('sha256').update(bytes).digest('hex');
}

/** Pushes one image to one subject and says how it went, as an operator would read it. */
async function pushTo(which: 'real' | 'simulated', image: ApplianceImage) {
	const node = nodeOf[which];
	const run = await startPush(systemActor, { image_id: image.id, nodes: [node.name], reboot_timeout_seconds: 60 });
	await waitForRun(run.id, ['succeeded', 'failed'], 120_000);
	const done = await getRun(run.id);
	const [row] = await db()
		.select()
		.from(applianceUpdates)
		.where(and(eq(applianceUpdates.runId, run.id), eq(applianceUpdates.nodeId, node.id)));
	return {
		states: await statesOf(run.id, node.id),
		state: row!.state,
		error: (done.tasks[0]?.error ?? '').replaceAll(node.name, '<node>'),
		slots: await slotReport(which),
		bytes: row!.bytes
	};
}

async function agree(scenario: (which: 'real' | 'simulated') => Promise<unknown>) {
	const onReal = await scenario('real');
	const onSim = await scenario('simulated');
	expect(onSim).toEqual(onReal);
	return onReal;
}

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-conformance-appliances-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 1, firstHost: 38 });
	real = bed.hosts[0] as TestHost;
	handle = await freshPglite();
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	otherKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
	// Both appliances trust the release key from their installation on, and start from the same slots.
	await mkdir(join(real.root, 'etc/flotilla/release-keys'), { recursive: true });
	await writeFile(join(real.root, 'etc/flotilla/release-keys/release-1.pem'), pem);
	sim = await startSimulatedHost({
		name: 'sim-appliance',
		address: '127.0.1.37',
		authorizedKey: readFileSync(bed.clientPrivateKeyPath + '.pub', 'utf8')
	});
	const slotImage = (slot: string) => readFileSync(join(real.root, `boot/flotilla/slot-${slot}.img`), 'utf8');
	installSlots(sim.model, { a: slotImage('a'), b: slotImage('b') }, { releaseKeys: [pem] });
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const values = [
		{ name: real.name, host: real.address, port: real.port, hostKeyFingerprint: real.hostKeyFingerprint },
		{ name: sim.name, host: sim.address, port: sim.port, hostKeyFingerprint: sim.hostKeyFingerprint }
	].map((v) => ({
		...v,
		credentialId: cred.id,
		kind: 'appliance' as const,
		labels: { hardware: 't640' },
		hostKeyStatus: 'pinned' as const
	}));
	const [r, s] = await db().insert(nodes).values(values).returning();
	nodeOf.real = r!;
	nodeOf.simulated = s!;
	await startEngine({ concurrency: 4, leaseMs: 3_000, sweepMs: 500, shutdownGraceMs: 0 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await sim?.stop();
	await bed?.stop();
	useImageStore(undefined);
	await rm(workDir, { recursive: true, force: true });
});

describe('simulated appliances run the A/B flow as real ones do', () => {
	it('a signed image: uploaded over SFTP, verified, booted, gated and committed', async () => {
		const image = await imageRelease('1.4.0');
		const outcome = await agree((which) => pushTo(which, image));
		expect(outcome).toMatchObject({
			states: ['pending', 'uploading', 'verifying', 'ready', 'rebooting', 'verifying_health', 'succeeded'],
			state: 'succeeded',
			bytes: image.size
		});
		expect((outcome as { slots: string }).slots).toMatch(/^active=b\nnext=b\ngood=b\ntries=0\nboots=1\nfallback=\n/);
		expect(await sha256OfSlot('real', 'b')).toBe(image.sha256);
		expect(await sha256OfSlot('simulated', 'b')).toBe(image.sha256);
	}, 300_000);

	it('an image signed by a key the appliance does not trust fails its verification; nothing reboots', async () => {
		const image = await imageRelease('1.5.0', otherKey);
		const outcome = await agree((which) => pushTo(which, image));
		expect(outcome).toMatchObject({
			states: ['pending', 'uploading', 'verifying', 'failed'],
			state: 'failed',
			error: expect.stringMatching(/bad signature: the image's sha256 is signed by none of the release keys/)
		});
		expect((outcome as { slots: string }).slots).toMatch(/^active=b\nnext=b\ngood=b\ntries=0\nboots=1\n/);
	}, 300_000);

	it('an image whose system fails the health gate after the reboot goes back to the good slot', async () => {
		const image = await imageRelease('1.6.0');
		const outcome = await agree(async (which) => {
			if (which === 'real') await bed.setFault(real, 'fail-health');
			else sim.model.faults.failHealth = true;
			try {
				return await pushTo(which, image);
			} finally {
				if (which === 'real') await bed.clearFaults(real);
				else sim.model.faults = {};
			}
		});
		expect(outcome).toMatchObject({ state: 'rolled_back', error: expect.stringMatching(/health gate failed: slot a/) });
		expect((outcome as { states: string[] }).states).toEqual([
			'pending',
			'uploading',
			'verifying',
			'ready',
			'rebooting',
			'verifying_health',
			'rolled_back'
		]);
		expect((outcome as { slots: string }).slots).toMatch(/^active=b\nnext=b\ngood=b\n/);
	}, 300_000);
});
