/**
 * Group commit: many callers each wait for their own write to commit, and the writes that arrive while one
 * batch is in flight go to the database together as the next batch. With one task running, a write costs
 * one round trip, as it would alone; with hundreds running, hundreds of writes share one round trip.
 * Nothing waits on a timer: the first batch starts once the current turn of the event loop is done, the
 * next as soon as the previous one committed.
 */
export class GroupCommit<T, R> {
	private pending: { item: T; resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
	/** The drain in progress (from the first item of a crowd until the queue is empty), if any. */
	private draining: Promise<void> | undefined;

	/**
	 * @param write Writes a batch in one statement (or one transaction) and returns one result per item, in
	 *   order. If it throws, every caller in that batch gets the error: a batch commits whole or not at all.
	 */
	constructor(
		private readonly write: (items: T[]) => Promise<R[]>,
		private readonly maxBatch = 500
	) {}

	add(item: T): Promise<R> {
		return new Promise<R>((resolve, reject) => {
			this.pending.push({ item, resolve, reject });
			// The first batch waits for the rest of this turn of the event loop: the callbacks of every socket
			// that became readable with this one (say, many commands ending together) join it. Without the
			// wait, an embedded database that executes a statement synchronously would never batch anything.
			this.draining ??= this.drain();
		});
	}

	/** Resolves once everything added before the call is written (or failed): used at shutdown and by tests. */
	async settled(): Promise<void> {
		while (this.draining) await this.draining;
	}

	private async drain(): Promise<void> {
		await new Promise<void>((r) => setImmediate(r));
		while (this.pending.length) {
			const batch = this.pending.splice(0, this.maxBatch);
			try {
				const results = await this.write(batch.map((p) => p.item));
				batch.forEach((p, i) => p.resolve(results[i]!));
			} catch (err) {
				for (const p of batch) p.reject(err);
			}
		}
		// Cleared in the same turn that found the queue empty: an item added after that starts a new drain.
		this.draining = undefined;
	}
}
