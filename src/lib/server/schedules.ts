import { eq, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { schedules } from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';

/**
 * Periodic work that must happen once per period across every console instance (the health sweep,
 * auto-update). Each instance ticks; the one whose UPDATE moves the turn's `next_at` forward runs it. The
 * UPDATE is the lock: two instances can never both take one turn, and a dead instance holds nothing.
 */

export interface Periodic {
	name: string;
	/** Seconds between turns; 0 turns it off. */
	everySeconds: number;
	run(): Promise<Record<string, unknown>>;
}

/** Takes this period's turn if it is due and nobody took it; says whether we got it. */
export async function claimTurn(name: string, everySeconds: number): Promise<boolean> {
	await db()
		.insert(schedules)
		.values({ name, nextAt: new Date(0) })
		.onConflictDoNothing();
	const taken = await db()
		.update(schedules)
		.set({
			nextAt: sql`now() + make_interval(secs => ${everySeconds})`,
			lastStartedAt: sql`now()`
		})
		.where(sql`${schedules.name} = ${name} and ${schedules.nextAt} <= now()`)
		.returning({ name: schedules.name });
	return taken.length > 0;
}

async function runTurn(job: Periodic): Promise<void> {
	if (!(await claimTurn(job.name, job.everySeconds))) return;
	let result: Record<string, unknown>;
	try {
		result = await job.run();
	} catch (err) {
		log.error({ err: loggableError(err), job: job.name }, 'periodic job failed');
		result = { error: (err as Error).message };
	}
	await db().update(schedules).set({ lastEndedAt: new Date(), lastResult: result }).where(eq(schedules.name, job.name));
}

/** Ticks every job on this instance until the returned stop is called (which waits for a running turn). */
export function startPeriodic(jobs: Periodic[], tickMs = 5_000): () => Promise<void> {
	const running = new Map<string, Promise<void>>();
	const tick = () => {
		for (const job of jobs) {
			if (job.everySeconds <= 0 || running.has(job.name)) continue;
			const p = runTurn(job)
				.catch((err) => log.warn({ err: loggableError(err), job: job.name }, 'periodic tick failed'))
				.finally(() => running.delete(job.name));
			running.set(job.name, p);
		}
	};
	const timer = setInterval(tick, tickMs);
	timer.unref();
	tick();
	return async () => {
		clearInterval(timer);
		await Promise.all(running.values());
	};
}
