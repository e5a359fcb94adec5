import { matchesEventTypes } from '$lib/schemas/events';
import { eventBus, readEvents, type EngineEvent } from './events';

const HEARTBEAT_MS = 15_000;
/** A client this far behind (in queued bytes) is dropped; it reconnects with Last-Event-ID and loses nothing. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;
const PAGE = 1_000;

export interface StreamOptions {
	/** Send events after this id (the client's Last-Event-ID); `undefined` means only what happens from now on. */
	after?: number;
	/** Only this run's events. */
	runId?: string;
	/** Only events of these types (patterns from `eventTypesSchema`: `run.state`, `task.*`). */
	types?: readonly string[];
	signal: AbortSignal;
}

const encoder = new TextEncoder();

export function formatEvent(e: EngineEvent): string {
	return `id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
}

/**
 * The bus hands the same event objects, and the same batch array, to every stream: each event is formatted
 * and encoded once, and a batch that a stream sends whole is joined into one chunk once, however many
 * clients are connected (they only read the bytes; the HTTP layer copies them to its socket).
 */
const encoded = new WeakMap<EngineEvent, Uint8Array>();
const encodedBatches = new WeakMap<readonly EngineEvent[], Uint8Array>();

function encodedEvent(e: EngineEvent): Uint8Array {
	let bytes = encoded.get(e);
	if (!bytes) {
		bytes = encoder.encode(formatEvent(e));
		encoded.set(e, bytes);
	}
	return bytes;
}

function joined(events: readonly EngineEvent[]): Uint8Array {
	if (events.length === 1) return encodedEvent(events[0]!);
	return Buffer.concat(events.map(encodedEvent));
}

function encodedBatch(batch: readonly EngineEvent[]): Uint8Array {
	let bytes = encodedBatches.get(batch);
	if (!bytes) {
		bytes = joined(batch);
		encodedBatches.set(batch, bytes);
	}
	return bytes;
}

/**
 * A `text/event-stream` of engine events. It subscribes to the bus before reading the backlog from the
 * table, and sends each id once, in order: the backlog up to the bus's position at subscription, then live
 * events above what was sent. So a client resuming with Last-Event-ID sees no gap and no duplicate.
 */
export function eventStream(opts: StreamOptions): ReadableStream<Uint8Array> {
	let unsubscribe: (() => void) | undefined;
	let heartbeat: NodeJS.Timeout | undefined;
	let closed = false;
	const teardown = () => {
		closed = true;
		unsubscribe?.();
		clearInterval(heartbeat);
		opts.signal.removeEventListener('abort', onAbort);
	};
	let onAbort = () => {};

	return new ReadableStream<Uint8Array>(
		{
			async start(controller) {
				let lastSent = opts.after ?? eventBus.position;
				let live = false;
				const buffered: EngineEvent[] = [];
				/** Sends, as one chunk, the events of `batch` this client wants and has not had yet. */
				const send = (batch: readonly EngineEvent[]) => {
					if (closed) return;
					const wanted = batch.filter(
						(e) =>
							e.id > lastSent &&
							(!opts.runId || e.run_id === opts.runId) &&
							(!opts.types || matchesEventTypes(opts.types, e.type))
					);
					if (!wanted.length) return;
					lastSent = wanted.at(-1)!.id;
					controller.enqueue(wanted.length === batch.length ? encodedBatch(batch) : joined(wanted));
					if ((controller.desiredSize ?? 0) < -MAX_BUFFERED_BYTES) {
						teardown();
						controller.close();
					}
				};
				onAbort = () => {
					if (closed) return;
					teardown();
					controller.close();
				};
				opts.signal.addEventListener('abort', onAbort);
				unsubscribe = eventBus.subscribeBatch((batch) => (live ? send(batch) : buffered.push(...batch)));
				const upTo = eventBus.position;
				controller.enqueue(encoder.encode('retry: 2000\n\n'));
				try {
					while (!closed && lastSent < upTo) {
						const page = await readEvents({ after: lastSent, limit: PAGE, runId: opts.runId, types: opts.types });
						const inRange = page.filter((e) => e.id <= upTo);
						send(inRange);
						// Filtered by run or type, a page may end before upTo without the backlog being exhausted.
						if (page.length < PAGE || inRange.length < page.length) break;
					}
				} catch (err) {
					teardown();
					controller.error(err);
					return;
				}
				lastSent = Math.max(lastSent, upTo);
				send(buffered);
				buffered.length = 0;
				live = true;
				heartbeat = setInterval(() => {
					if (!closed) controller.enqueue(encoder.encode(': heartbeat\n\n'));
				}, HEARTBEAT_MS);
				heartbeat.unref();
			},
			cancel() {
				teardown();
			}
		},
		new ByteLengthQueuingStrategy({ highWaterMark: 64 * 1024 })
	);
}
