import { inArray, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { loginThrottle } from '$lib/server/db/schema';

/**
 * Sign-in throttling with growing delays, per source IP and per username. A few mistakes cost nothing;
 * after that each failure doubles the wait (1 s, 2 s, 4 s, ... up to 15 minutes). Failures are forgotten
 * an hour after the last one. An IP gets more free attempts than a username because offices share one.
 */
const FREE_FAILURES = { ip: 20, user: 5 } as const;
const MAX_DELAY_S = 15 * 60;
const FORGET_AFTER = '1 hour';

export type ThrottleKey = `ip:${string}` | `user:${string}`;

export function throttleKeys(ip: string, username: string): ThrottleKey[] {
	return [`ip:${ip}`, `user:${username.toLowerCase()}`];
}

/** Seconds to wait before `failures` failures may try again; 0 when not yet throttled. */
export function delayAfter(failures: number, kind: 'ip' | 'user'): number {
	const over = failures - FREE_FAILURES[kind];
	if (over <= 0) return 0;
	return Math.min(2 ** (over - 1), MAX_DELAY_S);
}

/** Seconds the caller must still wait, the longest over all keys; 0 when it may try now. */
export async function throttledFor(keys: ThrottleKey[]): Promise<number> {
	const rows = await db()
		.select({ blockedUntil: loginThrottle.blockedUntil })
		.from(loginThrottle)
		.where(inArray(loginThrottle.key, keys));
	const now = Date.now();
	const waits = rows.map((r) => (r.blockedUntil ? Math.ceil((r.blockedUntil.getTime() - now) / 1000) : 0));
	return Math.max(0, ...waits);
}

export async function recordLoginFailure(keys: ThrottleKey[]): Promise<void> {
	for (const key of keys) {
		const [row] = await db()
			.insert(loginThrottle)
			.values({ key, failures: 1 })
			.onConflictDoUpdate({
				target: loginThrottle.key,
				set: {
					failures: sql`case when ${loginThrottle.lastFailureAt} < now() - interval '${sql.raw(FORGET_AFTER)}' then 1 else ${loginThrottle.failures} + 1 end`,
					lastFailureAt: sql`now()`
				}
			})
			.returning({ failures: loginThrottle.failures });
		const delay = delayAfter(row!.failures, key.startsWith('ip:') ? 'ip' : 'user');
		if (delay > 0) {
			await db()
				.update(loginThrottle)
				.set({ blockedUntil: new Date(Date.now() + delay * 1000) })
				.where(sql`${loginThrottle.key} = ${key}`);
		}
	}
}

export async function clearLoginFailures(keys: ThrottleKey[]): Promise<void> {
	await db().delete(loginThrottle).where(inArray(loginThrottle.key, keys));
}
