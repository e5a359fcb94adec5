import { eq, inArray, sql } from 'drizzle-orm';
import { db, type Database } from '$lib/server/db';
import { loginThrottle } from '$lib/server/db/schema';

/**
 * Sign-in throttling with growing delays, per username and per source address. A few mistakes cost
 * nothing; after that each one doubles the wait (1 s, 2 s, 4 s, ... up to 15 minutes). Counts are forgotten
 * an hour after the last one. An address gets more free attempts than a username because offices share one.
 *
 * Attempts on a username are counted *before* the password is checked, in one transaction that holds
 * the row, so a burst of parallel guesses cannot all pass the check before any failure is written.
 * A right password then clears the username's count. Addresses are charged only for failures, so that
 * colleagues signing in from one office do not lock each other out, and so that an attacker who owns
 * one account cannot wipe an address's record by signing in as themselves between guesses.
 */
const FREE = { ip: 20, user: 5 } as const;
const MAX_DELAY_S = 15 * 60;
const FORGET_AFTER = sql.raw(`interval '1 hour'`);

export interface ThrottleKeys {
	ip: `ip:${string}`;
	user: `user:${string}`;
}

export function throttleKeys(ip: string, username: string): ThrottleKeys {
	return { ip: `ip:${ip}`, user: `user:${username.trim().toLowerCase()}` };
}

/** Seconds to wait after `count` counted attempts; 0 while they are still free. */
export function delayAfter(count: number, kind: 'ip' | 'user'): number {
	const over = count - FREE[kind];
	if (over <= 0) return 0;
	return Math.min(2 ** (over - 1), MAX_DELAY_S);
}

/** Adds one to a key's count (locking its row until the transaction ends) and sets its wait. */
async function charge(tx: Database, key: string, kind: 'ip' | 'user'): Promise<void> {
	const [row] = await tx
		.insert(loginThrottle)
		.values({ key, failures: 1 })
		.onConflictDoUpdate({
			target: loginThrottle.key,
			set: {
				failures: sql`case when ${loginThrottle.lastFailureAt} < now() - ${FORGET_AFTER} then 1 else ${loginThrottle.failures} + 1 end`,
				lastFailureAt: sql`now()`
			}
		})
		.returning({ failures: loginThrottle.failures });
	const delay = delayAfter(row!.failures, kind);
	if (delay > 0) {
		await tx
			.update(loginThrottle)
			.set({ blockedUntil: sql`now() + make_interval(secs => ${delay})` })
			.where(eq(loginThrottle.key, key));
	}
}

/**
 * Call before checking a password. Returns the seconds the caller must still wait (nothing is counted
 * then), or 0 after counting this attempt against the username.
 */
export async function claimLoginAttempt(keys: ThrottleKeys): Promise<number> {
	return db().transaction(async (tx) => {
		// Rows must exist before they can be locked: otherwise a burst of first attempts would each find
		// nothing to wait for. A concurrent insert of the same key waits here until the other one commits.
		await tx
			.insert(loginThrottle)
			.values([
				{ key: keys.ip, failures: 0 },
				{ key: keys.user, failures: 0 }
			])
			.onConflictDoNothing();
		const rows = await tx
			.select({
				wait: sql<number>`ceil(extract(epoch from (${loginThrottle.blockedUntil} - now())))::int`
			})
			.from(loginThrottle)
			.where(inArray(loginThrottle.key, [keys.ip, keys.user]))
			.for('update');
		const wait = Math.max(0, ...rows.map((r) => r.wait ?? 0));
		if (wait > 0) return wait;
		await charge(tx as unknown as Database, keys.user, 'user');
		return 0;
	});
}

/** After a wrong password: the address is charged too. */
export async function recordLoginFailure(keys: ThrottleKeys): Promise<void> {
	await db().transaction((tx) => charge(tx as unknown as Database, keys.ip, 'ip'));
}

/** After a right password: the username starts afresh. The address keeps its record of failures. */
export async function clearLoginFailures(keys: ThrottleKeys): Promise<void> {
	await db().delete(loginThrottle).where(eq(loginThrottle.key, keys.user));
}
