import { and, asc, eq, gt, like, or, sql } from 'drizzle-orm';
import { databaseHandle, db, jsonParam, rowsOf } from '$lib/server/db';
import { events, type EventRow } from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';
import { GroupCommit } from './group-commit';

/** An event as the engine publishes it and SSE clients receive it. */
export interface EngineEvent {
	id: number;
	at: string;
	type: string;
	run_id: string | null;
	task_id: string | null;
	node_id: string | null;
	data: Record<string, unknown>;
}

export interface NewEvent {
	type: string;
	runId?: string | null;
	taskId?: string | null;
	nodeId?: string | null;
	data?: Record<string, unknown>;
}

const CHANNEL = 'flotilla_events';
// Any constant; it only has to be the same in every instance writing to this database.
const EVENT_ORDER_LOCK = 7_140_232;
/** A batch is one insert and one NOTIFY. */
const MAX_BATCH = 1_000;
/** Fallback for a missed NOTIFY (a dropped LISTEN connection): the bus polls the table this often. */
const POLL_MS = 1_000;

export function presentEvent(row: EventRow): EngineEvent {
	return {
		id: row.id,
		at: row.at.toISOString(),
		type: row.type,
		run_id: row.runId,
		task_id: row.taskId,
		node_id: row.nodeId,
		data: row.data
	};
}

/**
 * Writes a batch of events (batched by a GroupCommit: what arrives while one batch is written goes in the
 * next). Ids are taken under a transaction-scoped advisory lock, so batches commit in id order across
 * instances: readers that follow the table by id never skip a row that commits late. The NOTIFY goes out in
 * the same transaction, so it is delivered only once the rows are visible. It never throws: a batch that
 * could not be written is logged once, and its callers resolve all the same.
 */
async function writeEvents(batch: NewEvent[]): Promise<void[]> {
	try {
		const committed = await db().transaction(async (tx) => {
			await tx.execute(sql`select pg_advisory_xact_lock(${EVENT_ORDER_LOCK})`);
			// The batch travels as one JSON parameter: building and binding five parameters per row cost
			// more than the insert itself once thousands of events a second were written.
			const json = jsonParam(
				batch.map((e, i) => ({
					i,
					type: e.type,
					run_id: e.runId ?? null,
					task_id: e.taskId ?? null,
					node_id: e.nodeId ?? null,
					data: e.data ?? {}
				}))
			);
			const ids = rowsOf<{ id: string | number }>(
				await tx.execute(sql`
					insert into events (type, run_id, task_id, node_id, data)
					select type, run_id, task_id, node_id, data
					from jsonb_to_recordset(${json}::jsonb) as v(i int, type text, run_id uuid, task_id uuid, node_id uuid, data jsonb)
					order by i
					returning id`)
			).map((r) => Number(r.id));
			await tx.execute(sql`select pg_notify(${CHANNEL}, ${String(Math.max(...ids))})`);
			return ids;
		});
		commitObserver?.(committed);
	} catch (err) {
		// The tables hold the true state; a lost event costs a live update, not correctness.
		log.error({ err: loggableError(err), events: batch.length }, 'could not write engine events');
	}
	return batch.map(() => undefined);
}

type Listener = (event: EngineEvent) => void;
/** Receives the events the bus read together (in id order), as one array shared by every listener. */
type BatchListener = (events: readonly EngineEvent[]) => void;

/**
 * Delivers every committed event, in id order, to this instance's subscribers (SSE streams, the runner's
 * cancel watch). It follows the table: a NOTIFY from any instance only says "there is more to read".
 */
class EventBus {
	private listeners = new Set<BatchListener>();
	private cursor = 0;
	private reading: Promise<void> | undefined;
	private again = false;
	private stopListening: (() => Promise<void>) | undefined;
	private poll: NodeJS.Timeout | undefined;

	async start(): Promise<void> {
		const [row] = await db()
			.select({ max: sql<number | null>`max(${events.id})` })
			.from(events);
		this.cursor = Number(row?.max ?? 0);
		this.stopListening = await databaseHandle().listen(CHANNEL, () => this.wake());
		this.poll = setInterval(() => this.wake(), POLL_MS);
		this.poll.unref();
	}

	async stop(): Promise<void> {
		clearInterval(this.poll);
		await this.stopListening?.().catch(() => {});
		this.stopListening = undefined;
		await this.reading;
	}

	/** The id of the last event delivered: anything above it will still come through `subscribe`. */
	get position(): number {
		return this.cursor;
	}

	subscribe(listener: Listener): () => void {
		return this.subscribeBatch((batch) => {
			for (const event of batch) listener(event);
		});
	}

	/** For listeners that do better with many events at once: an SSE stream writes a batch as one chunk. */
	subscribeBatch(listener: BatchListener): () => void {
		this.listeners.add(listener);
		return () => this.listeners.delete(listener);
	}

	wake(): void {
		if (this.reading) {
			this.again = true;
			return;
		}
		this.reading = this.readAll()
			.catch((err) => log.warn({ err: loggableError(err) }, 'event bus read failed'))
			.finally(() => {
				this.reading = undefined;
				if (this.again) {
					this.again = false;
					this.wake();
				}
			});
	}

	private async readAll(): Promise<void> {
		for (;;) {
			const rows = await readEvents({ after: this.cursor, limit: 2_000 });
			if (!rows.length) return;
			this.cursor = rows.at(-1)!.id;
			for (const listener of this.listeners) {
				try {
					listener(rows);
				} catch (err) {
					log.warn({ err: loggableError(err) }, 'event listener threw');
				}
			}
			if (rows.length < 2_000) return;
		}
	}
}

/**
 * Events after `after` in id order, optionally for one run and only of some types (patterns as
 * `eventTypesSchema` accepts them: `run.state`, or a family `task.*`).
 */
export async function readEvents(q: {
	after: number;
	limit: number;
	runId?: string;
	types?: readonly string[];
}): Promise<EngineEvent[]> {
	const rows = await db()
		.select()
		.from(events)
		.where(
			and(
				gt(events.id, q.after),
				q.runId ? eq(events.runId, q.runId) : undefined,
				q.types
					? or(...q.types.map((p) => (p.endsWith('.*') ? like(events.type, `${p.slice(0, -1)}%`) : eq(events.type, p))))
					: undefined
			)
		)
		.orderBy(asc(events.id))
		.limit(q.limit);
	return rows.map(presentEvent);
}

let commitObserver: ((ids: number[]) => void) | undefined;

/**
 * Tells `observer` the ids of every batch of events right after its transaction committed, so that a
 * benchmark can measure how long an event takes from its commit to an SSE client. One observer at a time.
 */
export function observeEventCommits(observer: ((ids: number[]) => void) | undefined): void {
	commitObserver = observer;
}

const writer = new GroupCommit<NewEvent, void>(writeEvents, MAX_BATCH);
export const eventBus = new EventBus();

/** Resolves once the event is written, or once writing it failed and was logged: it never rejects. */
export function recordEvent(event: NewEvent): Promise<void> {
	return writer.add(event);
}

/** Resolves once every event recorded before the call is written; used at shutdown and by tests. */
export function drainEvents(): Promise<void> {
	return writer.settled();
}

/**
 * The id of the newest committed event (0 when there is none). A page takes it before reading its snapshot
 * and then streams `?after=` it: whatever changed in between arrives again as an event, and applying it twice
 * is harmless, whereas taking it after the snapshot could miss a change.
 */
export async function lastEventId(): Promise<number> {
	const [row] = await db()
		.select({ max: sql<number | null>`max(${events.id})` })
		.from(events);
	return Number(row?.max ?? 0);
}
