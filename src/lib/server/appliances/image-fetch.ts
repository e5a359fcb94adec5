import { Readable } from 'node:stream';
import { and, eq, lt, sql } from 'drizzle-orm';
import { recordAudit, systemActor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { applianceImages, type ApplianceImage } from '$lib/server/db/schema';
import { sendJob, workQueue } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { getFrom, resolveTarget, TargetRefused, type OutboundDownload } from '$lib/server/http/outbound';
import { log } from '$lib/server/log';
import { readNotifySettings } from '$lib/server/notify/settings';
import { discardImageBytes, IMAGE_FETCH_QUEUE, receiveChunk } from './images';

/*
 * Images the console fetches from a URL (docs/appliances.md, "By URL"), as a durable job on a pg-boss queue
 * shared by every console: a console that stops or dies mid-fetch leaves the job to be retried (by it once back,
 * or by another), and the retry continues from the bytes already kept (an HTTP Range request; a server that
 * answers with the whole body instead starts it over). The URL goes through the outbound guard at every
 * attempt, the declared size bounds what is read, and the sha256 of the whole must be the declared one.
 */

export interface ImageFetchSettings {
	/** Attempts before the image is marked failed. */
	attempts: number;
	retryDelaySeconds: number;
	/** How long a server may send nothing before an attempt gives up. */
	idleMs: number;
	/** Bytes between two checkpoints of what is kept (where a retry resumes). */
	checkpointBytes: number;
}

let settings: ImageFetchSettings = {
	attempts: 5,
	retryDelaySeconds: 30,
	idleMs: 60_000,
	checkpointBytes: 8 << 20
};

/** An attempt that cannot succeed by trying again (the answer or the bytes are wrong): the image fails now. */
class FetchRefused extends Error {}

/** Joins this console to the image-fetch queue and sends the jobs of fetches declared but never queued. */
export async function startImageFetches(s: Partial<ImageFetchSettings> = {}): Promise<void> {
	settings = { ...settings, ...s };
	await workQueue<{ imageId: string }>(
		IMAGE_FETCH_QUEUE,
		{
			// More than `attempts`: an attempt a dead console never finished is counted, not reported; the next
			// one then sees the count and fails the image, rather than the job running out with it still fetching.
			retryLimit: settings.attempts + 2,
			retryDelaySeconds: settings.retryDelaySeconds,
			retryBackoff: false,
			// A large image on a slow link: the heartbeat, not this, tells a dead console's job from a slow one.
			expireInSeconds: 12 * 3_600,
			concurrency: 2
		},
		(job) => fetchAttempt(job.imageId)
	);
	const lost = await db()
		.select({ id: applianceImages.id })
		.from(applianceImages)
		.where(
			and(
				eq(applianceImages.state, 'fetching'),
				eq(applianceImages.fetchAttempts, 0),
				lt(applianceImages.createdAt, sql`now() - interval '1 minute'`)
			)
		);
	for (const r of lost) await sendJob(IMAGE_FETCH_QUEUE, { imageId: r.id }, r.id);
}

async function fail(image: ApplianceImage, why: string): Promise<void> {
	// The bytes go first: an image that reads `failed` keeps nothing (marked first, a reader could still find them).
	await discardImageBytes(image.id);
	await db()
		.update(applianceImages)
		.set({ state: 'failed', error: why, receivedBytes: 0 })
		.where(eq(applianceImages.id, image.id));
	await recordAudit(systemActor, {
		action: 'appliance.image_fetch',
		targetType: 'release',
		targetId: image.releaseId,
		result: 'denied',
		details: { image_id: image.id, url: image.sourceUrl, declared_by: image.createdBy, reason: why }
	});
}

/** One attempt; throws to have pg-boss retry it, returns when the image is complete or failed. */
export async function fetchAttempt(imageId: string): Promise<void> {
	const [image] = await db()
		.update(applianceImages)
		.set({ fetchAttempts: sql`${applianceImages.fetchAttempts} + 1` })
		.where(and(eq(applianceImages.id, imageId), eq(applianceImages.state, 'fetching')))
		.returning();
	// Declared again, complete or failed meanwhile: nothing left to do.
	if (!image) return;
	if (image.fetchAttempts > settings.attempts) {
		return fail(image, `gave up after ${settings.attempts} attempts; the last: ${image.error ?? 'did not finish'}`);
	}
	try {
		await fetchOnce(image);
	} catch (err) {
		const why = err instanceof FetchRefused || err instanceof Error ? err.message : String(err);
		if (err instanceof FetchRefused || image.fetchAttempts >= settings.attempts) {
			return fail(image, image.fetchAttempts > 1 ? `${why} (attempt ${image.fetchAttempts})` : why);
		}
		await db().update(applianceImages).set({ error: why }).where(eq(applianceImages.id, image.id));
		log.info({ imageId, attempt: image.fetchAttempts, why }, 'image fetch: trying again');
		throw err;
	}
}

async function fetchOnce(image: ApplianceImage): Promise<void> {
	let target;
	try {
		target = await resolveTarget(image.sourceUrl!, {
			allowPrivate: (await readNotifySettings()).allowPrivateTargets
		});
	} catch (err) {
		if (err instanceof TargetRefused) throw new FetchRefused(`the URL ${err.message}`);
		throw err;
	}
	const host = target.url.host;
	let from = image.receivedBytes;
	let answer: OutboundDownload;
	try {
		answer = await getFrom(target, settings.idleMs, from > 0 ? { range: `bytes=${from}-` } : {});
	} catch (err) {
		throw new Error(`no answer from ${host}: ${(err as Error).message}`, { cause: err });
	}
	const refuse = (why: string): never => {
		answer.body.destroy();
		throw new FetchRefused(why);
	};
	if (from > 0 && answer.status === 206) {
		if (answer.contentRange !== `bytes ${from}-${image.size - 1}/${image.size}`) {
			refuse(`${host} answered the range from byte ${from} with Content-Range ${answer.contentRange ?? '(none)'}`);
		}
	} else if (answer.status === 200) {
		// The whole body again (a server without ranges): it starts over.
		if (from > 0) {
			await db().update(applianceImages).set({ receivedBytes: 0 }).where(eq(applianceImages.id, image.id));
			from = 0;
		}
	} else if (answer.status >= 500 || answer.status === 408 || answer.status === 429) {
		answer.body.destroy();
		throw new Error(`${host} answered HTTP ${answer.status}`);
	} else {
		refuse(`${host} answered HTTP ${answer.status}, not 200 (redirects are not followed)`);
	}
	const expected = image.size - from;
	if (answer.contentLength !== null && answer.contentLength !== expected) {
		refuse(
			from > 0
				? `the URL serves ${answer.contentLength} bytes from byte ${from}; ${expected} are left of the declared ${image.size}`
				: `the URL serves ${answer.contentLength} bytes; the image is declared with ${image.size}`
		);
	}
	let received: ApplianceImage;
	try {
		received = await receiveChunk(
			systemActor,
			image.id,
			from,
			Readable.toWeb(answer.body) as ReadableStream<Uint8Array>,
			{ fetching: true, checkpointBytes: settings.checkpointBytes }
		);
	} catch (err) {
		answer.body.destroy();
		if (!(err instanceof ServiceError)) throw err;
		if (err.fields.body) throw new FetchRefused(`the URL serves more than the declared ${image.size} bytes`);
		if (err.fields.sha256) throw new FetchRefused(err.message);
		throw err;
	}
	if (received.state !== 'complete') {
		// Cut off: what arrived is kept, and the next attempt asks for the rest.
		throw new Error(`the URL served ${received.receivedBytes} of the declared ${image.size} bytes`);
	}
	await recordAudit(systemActor, {
		action: 'appliance.image_fetch',
		targetType: 'release',
		targetId: image.releaseId,
		details: { image_id: image.id, url: image.sourceUrl, declared_by: image.createdBy, size: image.size }
	});
}
