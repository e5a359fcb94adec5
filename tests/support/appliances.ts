import { createHash, randomBytes, sign, type KeyObject } from 'node:crypto';
import { Readable } from 'node:stream';
import { and, asc, eq } from 'drizzle-orm';
import { declareImage, receiveChunk } from '../../src/lib/server/appliances/images';
import { systemActor } from '../../src/lib/server/audit';
import { db } from '../../src/lib/server/db';
import { events, type ApplianceImage } from '../../src/lib/server/db/schema';
import { createRelease } from '../../src/lib/server/releases/releases';
import { ed25519Signature } from '../../src/lib/server/releases/signing';

/** A stable release `version` whose manifest `signingKey` signed, created by the console. */
export async function signedRelease(signingKey: KeyObject, version: string) {
	const m: Record<string, unknown> = {
		version,
		sha: createHash('sha256').update(version).digest('hex'),
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	m.signature = ed25519Signature(m, signingKey);
	return createRelease(systemActor, m);
}

/** A release `version` signed by `signingKey`, with an image of `size` random bytes signed by it too, received whole by the console. */
export async function signedImageRelease(
	signingKey: KeyObject,
	version: string,
	size = 300_000
): Promise<ApplianceImage> {
	const r = await signedRelease(signingKey, version);
	const bytes = randomBytes(size);
	const sha256 = createHash('sha256').update(bytes).digest('hex');
	const signature = sign(null, Buffer.from(sha256), signingKey).toString('hex');
	const image = await declareImage(systemActor, { release_id: r.id, sha256, size: bytes.length, signature });
	return receiveChunk(systemActor, image.id, 0, Readable.toWeb(Readable.from([bytes])) as ReadableStream<Uint8Array>);
}

/** A run's task output as the page shows it, one line per line. */
export async function runOutput(runId: string): Promise<string> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.runId, runId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => l.t)).join('\n');
}
