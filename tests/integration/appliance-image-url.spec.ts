import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { declareImage, imagePath, useImageStore } from '../../src/lib/server/appliances/images';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { applianceImages, auditLog } from '../../src/lib/server/db/schema';
import { ServiceError } from '../../src/lib/server/errors';
import { updateNotifySettings } from '../../src/lib/server/notify/settings';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease } from '../../src/lib/server/releases/releases';
import { ed25519Signature, keyIdOf } from '../../src/lib/server/releases/signing';
import { freshPglite } from '../support/databases';

/**
 * An appliance image the console fetches from a URL instead of an upload (docs/appliances.md, "Images"):
 * through the outbound guard (loopback only when an admin allowed private targets), bounded by the declared
 * size, checked by sha256; any failure leaves no image behind. The server here is a real one on 127.0.0.1.
 */

const key = generateKeyPairSync('ed25519').privateKey;
const pub = createPublicKey(key);
const bytes = randomBytes(400_000);
const sha256 = createHash('sha256').update(bytes).digest('hex');
const signature = sign(null, Buffer.from(sha256), key).toString('hex');

let handle: DatabaseHandle;
let store: string;
let server: Server;
let base: string;
let version = 0;
/** What the server was asked for, by path. */
const requests: string[] = [];

async function newRelease(): Promise<string> {
	const m: Record<string, unknown> = {
		version: `5.0.${version++}`,
		sha: createHash('sha256').update(String(version)).digest('hex'),
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	m.signature = ed25519Signature(m, key);
	return (await createRelease(systemActor, m)).id;
}

async function declare(path: string, size = bytes.length) {
	const releaseId = await newRelease();
	const result = await declareImage(systemActor, {
		release_id: releaseId,
		sha256,
		size,
		signature,
		url: `${base}${path}`
	}).then(
		(image) => ({ image, error: null }),
		(error: unknown) => ({ image: null, error: error as ServiceError })
	);
	const left = await db().select().from(applianceImages).where(eq(applianceImages.releaseId, releaseId));
	return { ...result, releaseId, left };
}

beforeAll(async () => {
	handle = await freshPglite();
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	store = await mkdtemp(join(tmpdir(), 'flotilla-image-url-'));
	useImageStore(store);
	server = createServer((req, res) => {
		requests.push(req.url ?? '');
		switch (req.url) {
			case '/image.img':
				res.writeHead(200, { 'content-length': bytes.length });
				return res.end(bytes);
			case '/chunked.img':
				// No length announced: the size is enforced as the bytes arrive.
				res.writeHead(200);
				res.write(bytes.subarray(0, 100_000));
				return res.end(bytes.subarray(100_000));
			case '/longer.img':
				res.writeHead(200);
				res.write(bytes);
				return res.end(Buffer.alloc(1000));
			case '/other.img': {
				const other = randomBytes(bytes.length);
				res.writeHead(200, { 'content-length': other.length });
				return res.end(other);
			}
			case '/short.img':
				res.writeHead(200, { 'content-length': 1000 });
				return res.end(bytes.subarray(0, 1000));
			case '/cut.img':
				// Announces the whole image, sends half, and drops the connection.
				res.writeHead(200, { 'content-length': bytes.length });
				res.write(bytes.subarray(0, 200_000));
				return void setTimeout(() => res.socket?.destroy(), 50);
			case '/moved.img':
				res.writeHead(302, { location: `${base}/image.img` });
				return res.end();
			default:
				res.writeHead(404);
				return res.end('not here');
		}
	});
	await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
	base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
	await new Promise((r) => server.close(r));
	useImageStore(undefined);
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle.close();
	await rm(store, { recursive: true, force: true });
});

describe('appliance images by URL', () => {
	it('refuses a loopback URL unless an admin allowed private targets, without asking the server', async () => {
		const { error, left } = await declare('/image.img');
		expect(error).toBeInstanceOf(ServiceError);
		expect(error!.status).toBe(400);
		expect(error!.fields.url).toMatch(/resolves to 127\.0\.0\.1, a loopback, link-local or private address/);
		expect(left).toEqual([]);
		expect(requests).toEqual([]);
		const refused = await declareImage(systemActor, {
			release_id: await newRelease(),
			sha256,
			size: bytes.length,
			signature,
			url: 'file:///etc/passwd'
		}).catch((e: unknown) => e as ServiceError);
		expect((refused as ServiceError).fields.url).toBe('must be an http or https URL');
		const denied = await db()
			.select()
			.from(auditLog)
			.where(and(eq(auditLog.action, 'appliance.image_declare'), eq(auditLog.result, 'denied')));
		expect(denied).toHaveLength(2);
	});

	it('fetches an image whose size and sha256 match: complete, stored byte for byte', async () => {
		await updateNotifySettings(systemActor, { allowPrivateTargets: true });
		for (const path of ['/image.img', '/chunked.img']) {
			const { image, error } = await declare(path);
			expect(error).toBeNull();
			expect(image).toMatchObject({ state: 'complete', receivedBytes: bytes.length, sha256 });
			expect((await readFile(imagePath(image!.id))).equals(bytes)).toBe(true);
		}
	});

	it('refuses bytes past the declared size, another sha256, a short or cut body, a redirect and an error; nothing is left', async () => {
		await updateNotifySettings(systemActor, { allowPrivateTargets: true });
		const cases: [string, RegExp][] = [
			['/longer.img', /the URL serves more than the declared 400000 bytes/],
			['/other.img', /The image received has sha256 [0-9a-f]{64}, not the declared one/],
			['/short.img', /the URL serves 1000 bytes; the image is declared with 400000/],
			['/cut.img', /the URL served \d+ of the declared 400000 bytes/],
			['/moved.img', /answered HTTP 302, not 200 \(redirects are not followed\)/],
			['/missing.img', /answered HTTP 404, not 200/]
		];
		for (const [path, why] of cases) {
			requests.length = 0;
			const { error, left } = await declare(path);
			expect(error, path).toBeInstanceOf(ServiceError);
			expect(error!.status, path).toBe(400);
			expect(error!.fields.url, path).toMatch(why);
			expect(left, path).toEqual([]);
			expect(requests, path).toEqual([path]);
		}
		const fetchDenied = await db()
			.select()
			.from(auditLog)
			.where(and(eq(auditLog.action, 'appliance.image_fetch'), eq(auditLog.result, 'denied')));
		expect(fetchDenied).toHaveLength(cases.length);
	});
});
