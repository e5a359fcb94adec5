import { execFile } from 'node:child_process';
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { declareImage, imagePath, receiveChunk, useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { ServiceError } from '../../src/lib/server/errors';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease } from '../../src/lib/server/releases/releases';
import { ed25519Signature, keyIdOf } from '../../src/lib/server/releases/signing';
import { backends } from '../support/databases';

/**
 * Appliance images on the console (docs/appliances.md, "Images"): declared with a signature the console checks,
 * received in chunks that must follow one another, checked by sha256 at the last byte; every refusal a 4xx
 * naming the field, leaving nothing half-stored.
 */

const key = generateKeyPairSync('ed25519').privateKey;
const stranger = generateKeyPairSync('ed25519').privateKey;
const pub = createPublicKey(key);
const bytes = randomBytes(300_000);
const sha256 = createHash('sha256').update(bytes).digest('hex');
const signed = (sha: string, k = key) => sign(null, Buffer.from(sha), k).toString('hex');
const stream = (b: Uint8Array) =>
	new ReadableStream<Uint8Array>({
		start(c) {
			c.enqueue(b);
			c.close();
		}
	});

async function refusal(p: Promise<unknown>): Promise<ServiceError> {
	const err = await p.then(
		() => null,
		(e: unknown) => e
	);
	expect(err).toBeInstanceOf(ServiceError);
	return err as ServiceError;
}

describe.each(backends)('appliance images on $name', ({ open }) => {
	let handle: Awaited<ReturnType<typeof open>>;
	let store: string;
	let releaseId: string;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
		store = await mkdtemp(join(tmpdir(), 'flotilla-images-'));
		useImageStore(store);
		registerDomains();
		const m: Record<string, unknown> = {
			version: '3.0.0',
			sha: sha256,
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-06-01T00:00:00Z'
		};
		m.signature = ed25519Signature(m, key);
		releaseId = (await createRelease(systemActor, m)).id;
	});
	afterAll(async () => {
		useImageStore(undefined);
		useReleaseKeys(undefined);
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
		await rm(store, { recursive: true, force: true });
	});

	it('refuses a bad declaration with 4xx naming the field', async () => {
		const base = { release_id: releaseId, sha256, size: bytes.length, signature: signed(sha256) };
		expect((await refusal(declareImage(systemActor, { ...base, sha256: 'XYZ' }))).fields).toHaveProperty('sha256');
		expect((await refusal(declareImage(systemActor, { ...base, size: -1 }))).fields).toHaveProperty('size');
		expect((await refusal(declareImage(systemActor, { ...base, size: 'ten' }))).fields).toHaveProperty('size');
		expect((await refusal(declareImage(systemActor, { ...base, extra: 1 }))).status).toBe(400);
		const tooBig = await refusal(declareImage(systemActor, { ...base, size: 5 * 1024 ** 3 }));
		expect(tooBig.status).toBe(413);
		expect(tooBig.fields.size).toMatch(/FLOTILLA_IMAGE_MAX_BYTES/);
		const bad = await refusal(declareImage(systemActor, { ...base, signature: signed(sha256, stranger) }));
		expect(bad.status).toBe(400);
		expect(bad.fields.signature).toMatch(/verifies under none of the 1 release key/);
		const unknown = await refusal(
			declareImage(systemActor, { ...base, release_id: '00000000-0000-4000-8000-000000000000' })
		);
		expect(unknown.fields.release_id).toBe('no such release');
	});

	it('receives chunks in order only, refuses bytes past the size, and checks the sha256 at the end', async () => {
		const image = await declareImage(systemActor, {
			release_id: releaseId,
			sha256,
			size: bytes.length,
			signature: signed(sha256)
		});
		const first = await receiveChunk(systemActor, image.id, 0, stream(bytes.subarray(0, 100_000)));
		expect(first).toMatchObject({ receivedBytes: 100_000, state: 'receiving' });
		const gap = await refusal(receiveChunk(systemActor, image.id, 150_000, stream(bytes.subarray(150_000))));
		expect(gap.status).toBe(409);
		expect(gap.fields['Upload-Offset']).toBe('must be 100000');
		const over = await refusal(
			receiveChunk(systemActor, image.id, 100_000, stream(Buffer.concat([bytes.subarray(100_000), Buffer.from('x')])))
		);
		expect(over.fields.body).toMatch(/must end at byte 300000/);
		expect((await readFile(imagePath(image.id))).length).toBe(100_000);
		// The rest, but not the bytes that were signed: discarded whole at the last byte.
		const wrong = Buffer.from(bytes.subarray(100_000));
		wrong[0] = wrong[0]! ^ 1;
		const mismatch = await refusal(receiveChunk(systemActor, image.id, 100_000, stream(wrong)));
		expect(mismatch.fields.sha256).toMatch(/send the image again from offset 0/);
		expect((await readFile(imagePath(image.id))).length).toBe(0);
		await receiveChunk(systemActor, image.id, 0, stream(bytes.subarray(0, 200_000)));
		const done = await receiveChunk(systemActor, image.id, 200_000, stream(bytes.subarray(200_000)));
		expect(done).toMatchObject({ state: 'complete', receivedBytes: bytes.length });
		expect((await refusal(receiveChunk(systemActor, image.id, 0, stream(bytes)))).status).toBe(409);

		const dup = await refusal(
			declareImage(systemActor, { release_id: releaseId, sha256, size: bytes.length, signature: signed(sha256) })
		);
		expect(dup.status).toBe(409);

		// A push names appliances only, each field checked.
		const cred = await createCredential(systemActor, { name: 'k', privateKey: await openSshKey(store) });
		await db()
			.insert(nodes)
			.values({ name: 'web-1', host: '127.0.0.1', credentialId: cred.id, kind: 'server', hostKeyStatus: 'pinned' });
		const server = await refusal(startPush(systemActor, { image_id: image.id, nodes: ['web-1'] }));
		expect(server.fields.nodes).toBe('web-1 is not an appliance');
		expect((await refusal(startPush(systemActor, { image_id: image.id, nodes: ['nope'] }))).fields.nodes).toMatch(
			/unknown node nope/
		);
		expect(
			(await refusal(startPush(systemActor, { image_id: image.id, nodes: ['web-1'], window: 'later' }))).fields.window
		).toBe('must be wait or ignore');
		expect((await refusal(startPush(systemActor, { image_id: 'x', nodes: ['web-1'] }))).fields.image_id).toBe(
			'must be a UUID'
		);
	});
});

async function openSshKey(dir: string): Promise<string> {
	await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
	return readFile(join(dir, 'id'), 'utf8');
}
