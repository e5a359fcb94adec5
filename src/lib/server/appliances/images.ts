import { createHash, verify } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { and, desc, eq } from 'drizzle-orm';
import { declareImageSchema } from '$lib/schemas/appliances';
import { recordAudit, type Actor } from '$lib/server/audit';
import { config } from '$lib/server/config';
import { db } from '$lib/server/db';
import { applianceImages, releases, type ApplianceImage } from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { validate } from '$lib/server/http/api';
import { sendJob } from '$lib/server/engine';
import { resolveTarget, TargetRefused } from '$lib/server/http/outbound';
import { readNotifySettings } from '$lib/server/notify/settings';
import { releaseKeys } from '$lib/server/releases/keys';

/*
 * Appliance images (docs/appliances.md, "Images"): a release carries at most one image, declared with its
 * sha256, size and Ed25519 signature (over the sha256 written as 64 lowercase hex characters), then sent in
 * chunks, each starting where the stored bytes end, so an interrupted upload continues where it stopped. The
 * image is usable once every byte arrived and the stored file's sha256 is the declared one.
 */

let storeOverride: string | undefined;

/** The folder of the console's images: `images` in its data folder. */
function imageStore(): string {
	return storeOverride ?? join(config().dataDir, 'images');
}

/** For tests: keep images in this folder (undefined: back to the data folder's). */
export function useImageStore(dir: string | undefined): void {
	storeOverride = dir;
}

/** Where the console keeps an image's bytes. */
export function imagePath(id: string): string {
	return join(imageStore(), `${id}.img`);
}

/** The key that signed `sha256`, or null: the same release keys that verify manifests. */
export function imageSignedBy(sha256: string, signature: string): string | null {
	const bytes = Buffer.from(signature, 'hex');
	for (const k of releaseKeys().ed25519) {
		if (verify(null, Buffer.from(sha256, 'utf8'), k.key, bytes)) return k.id;
	}
	return null;
}

export async function declareImage(actor: Actor, body: unknown): Promise<ApplianceImage> {
	const input = validate(declareImageSchema, body);
	const [release] = await db().select().from(releases).where(eq(releases.id, input.release_id));
	if (!release) throw new ServiceError('validation_failed', 'Unknown release', { release_id: 'no such release' });
	const limit = config().imageMaxBytes;
	if (input.size > limit) {
		throw new ServiceError('payload_too_large', `The image is larger than this console's limit of ${limit} bytes`, {
			size: `must be at most ${limit} bytes (FLOTILLA_IMAGE_MAX_BYTES)`
		});
	}
	const keyId = imageSignedBy(input.sha256, input.signature);
	if (!keyId) {
		const why = releaseKeys().ed25519.length
			? `verifies under none of the ${releaseKeys().ed25519.length} release key(s): another key signed it, or it signs another sha256`
			: 'this console has no Ed25519 release key (FLOTILLA_RELEASE_PUBLIC_KEYS)';
		await recordAudit(actor, {
			action: 'appliance.image_declare',
			targetType: 'release',
			targetId: release.id,
			result: 'denied',
			details: { reason: why }
		});
		throw new ServiceError('validation_failed', `Signature refused: ${why}`, { signature: why });
	}
	const [existing] = await db().select().from(applianceImages).where(eq(applianceImages.releaseId, release.id));
	if (existing && existing.state !== 'failed') {
		throw conflict(`Release ${release.version} already has an image`, { release_id: 'this release has an image' });
	}
	if (input.url !== undefined) await checkedSource(actor, release.id, input.url);
	// A fetch that gave up leaves its image `failed` (saying why) until the release's image is declared again.
	if (existing) {
		await db()
			.delete(applianceImages)
			.where(and(eq(applianceImages.id, existing.id), eq(applianceImages.state, 'failed')));
		await discardImageBytes(existing.id);
	}
	const [row] = await db()
		.insert(applianceImages)
		.values({
			releaseId: release.id,
			sha256: input.sha256,
			size: input.size,
			signature: input.signature,
			verifiedBy: keyId,
			createdBy: actor.name,
			...(input.url === undefined ? {} : { state: 'fetching' as const, sourceUrl: input.url })
		})
		.returning();
	await mkdir(imageStore(), { recursive: true });
	// A declared image starts empty, whatever a file of an earlier console with the same id held.
	await (await open(imagePath(row!.id), 'w')).close();
	await recordAudit(actor, {
		action: 'appliance.image_declare',
		targetType: 'release',
		targetId: release.id,
		details: {
			image_id: row!.id,
			sha256: row!.sha256,
			size: row!.size,
			verified_by: keyId,
			...(input.url ? { url: input.url } : {})
		}
	});
	// The fetch is a job (./image-fetch.ts): it outlives this request and a console restart.
	if (input.url !== undefined) await sendJob(IMAGE_FETCH_QUEUE, { imageId: row!.id }, row!.id);
	return row!;
}

/** The durable queue of image fetches (./image-fetch.ts works on it). */
export const IMAGE_FETCH_QUEUE = 'appliance-image-fetch';

/**
 * The URL of an image the console fetches: through the outbound guard (docs/integrations.md): http or https,
 * and no loopback, link-local or private address unless an admin allowed those in Settings.
 */
async function checkedSource(actor: Actor, releaseId: string, url: string): Promise<void> {
	try {
		await resolveTarget(url, { allowPrivate: (await readNotifySettings()).allowPrivateTargets });
	} catch (err) {
		if (!(err instanceof TargetRefused)) throw err;
		await recordAudit(actor, {
			action: 'appliance.image_declare',
			targetType: 'release',
			targetId: releaseId,
			result: 'denied',
			details: { url, reason: err.message }
		});
		throw new ServiceError('validation_failed', `The image URL ${err.message}`, { url: err.message });
	}
}

export async function getImage(id: string): Promise<ApplianceImage> {
	const [row] = await db().select().from(applianceImages).where(eq(applianceImages.id, id));
	if (!row) throw notFound('Image');
	return row;
}

export async function imageOfRelease(releaseId: string): Promise<ApplianceImage | null> {
	const [row] = await db().select().from(applianceImages).where(eq(applianceImages.releaseId, releaseId));
	return row ?? null;
}

export async function listImages() {
	return db()
		.select({ image: applianceImages, version: releases.version, channel: releases.channel })
		.from(applianceImages)
		.innerJoin(releases, eq(releases.id, applianceImages.releaseId))
		.orderBy(desc(applianceImages.createdAt));
}

const receiving = new Set<string>();

async function fileSha256(path: string): Promise<string> {
	const hash = createHash('sha256');
	await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash);
	return hash.digest('hex');
}

/**
 * Appends one chunk that starts at `offset` (which must be where the stored bytes end). Bytes past the
 * declared size are refused and nothing of that chunk is kept. A chunk cut off midway keeps what arrived, so
 * the next one starts there. The last byte triggers the sha256 check: a mismatch discards the whole image.
 */
export async function receiveChunk(
	actor: Actor,
	id: string,
	offset: number,
	body: ReadableStream<Uint8Array> | null,
	options: { fetching?: boolean; checkpointBytes?: number } = {}
): Promise<ApplianceImage> {
	const image = await getImage(id);
	if (image.state === 'complete') throw conflict('The image is complete', { state: 'complete' });
	if (image.state === 'failed') {
		throw conflict('Fetching the image failed: declare it again', { state: `failed: ${image.error ?? ''}` });
	}
	if (image.state === 'fetching' && !options.fetching) {
		throw conflict('The console is fetching this image from its URL', { state: 'fetching' });
	}
	if (receiving.has(id)) throw conflict('Another chunk of this image is being received', { 'Upload-Offset': 'busy' });
	receiving.add(id);
	const path = imagePath(id);
	let size = await stat(path).then(
		(s) => s.size,
		() => 0
	);
	try {
		if (size !== image.receivedBytes) {
			// A chunk cut off by a crash may have left bytes past the recorded count: they were never confirmed.
			size = Math.min(size, image.receivedBytes);
			await truncate(path, size).catch(async () => {
				await mkdir(imageStore(), { recursive: true });
				await (await open(path, 'w')).close();
				size = 0;
			});
		}
		if (offset !== size) {
			throw conflict(`The image has ${size} bytes stored: send the chunk that starts there`, {
				'Upload-Offset': `must be ${size}`
			});
		}
		const file = await open(path, 'r+');
		let written = 0;
		let refused: ServiceError | null = null;
		try {
			if (body) {
				const reader = body.getReader();
				for (;;) {
					let chunk;
					try {
						chunk = await reader.read();
					} catch {
						break;
					}
					if (chunk.done) break;
					if (offset + written + chunk.value.byteLength > image.size) {
						await reader.cancel().catch(() => {});
						refused = new ServiceError(
							'validation_failed',
							`The chunk goes past the image's declared size of ${image.size} bytes`,
							{ body: `must end at byte ${image.size} at most` }
						);
						break;
					}
					await file.write(chunk.value, 0, chunk.value.byteLength, offset + written);
					const before = written;
					written += chunk.value.byteLength;
					// A long fetch keeps what is on disk as it goes, so that after a crash it resumes from there.
					const every = options.checkpointBytes;
					if (every && Math.floor(written / every) > Math.floor(before / every)) {
						await file.datasync();
						await db()
							.update(applianceImages)
							.set({ receivedBytes: offset + written })
							.where(eq(applianceImages.id, id));
					}
				}
			}
		} finally {
			await file.close();
		}
		if (refused) {
			await truncate(path, offset);
			throw refused;
		}
		const received = offset + written;
		await db().update(applianceImages).set({ receivedBytes: received }).where(eq(applianceImages.id, id));
		if (received < image.size) return { ...image, receivedBytes: received };
		const actual = await fileSha256(path);
		if (actual !== image.sha256) {
			await truncate(path, 0);
			await db().update(applianceImages).set({ receivedBytes: 0 }).where(eq(applianceImages.id, id));
			await recordAudit(actor, {
				action: 'appliance.image_upload',
				targetType: 'release',
				targetId: image.releaseId,
				result: 'denied',
				details: { image_id: id, sha256: actual, expected: image.sha256 }
			});
			throw new ServiceError('validation_failed', `The image received has sha256 ${actual}, not the declared one`, {
				sha256: `the bytes received hash to ${actual}; send the image again from offset 0`
			});
		}
		const [done] = await db()
			.update(applianceImages)
			.set({ state: 'complete', error: null })
			.where(eq(applianceImages.id, id))
			.returning();
		await recordAudit(actor, {
			action: 'appliance.image_upload',
			targetType: 'release',
			targetId: image.releaseId,
			details: { image_id: id, sha256: actual, size: image.size }
		});
		return done!;
	} finally {
		receiving.delete(id);
	}
}

/** Removes an image's bytes (tests and the demo's throwaway data). */
export async function discardImageBytes(id: string): Promise<void> {
	await rm(imagePath(id), { force: true });
}

export const presentImage = (i: ApplianceImage, release?: { version: string; channel: string }) => ({
	id: i.id,
	release_id: i.releaseId,
	version: release?.version,
	channel: release?.channel,
	sha256: i.sha256,
	size: i.size,
	signature: i.signature,
	verified_by: i.verifiedBy,
	state: i.state,
	received_bytes: i.receivedBytes,
	source_url: i.sourceUrl,
	error: i.error,
	created_by: i.createdBy,
	created_at: i.createdAt.toISOString()
});
