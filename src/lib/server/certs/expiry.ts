/**
 * Days to expiry and the alert level, for the inventory, the fleet status and the page. All arithmetic is on
 * instants (milliseconds since the epoch): a certificate's notAfter is UTC, and neither the console's time
 * zone nor a leap day moves it.
 */

const DAY_MS = 86_400_000;

export type ExpiryLevel = 'ok' | 'warning' | 'critical' | 'expired';

export interface ExpiryThresholds {
	/** Under this many days left: warning. */
	warnDays: number;
	/** Under this many days left: critical. */
	criticalDays: number;
}

/**
 * Whole days left until `notAfter`, rounded down: 29 days and 23 hours is 29. Negative once expired
 * (-1 during the first day after).
 */
export function daysLeft(notAfter: Date, now: Date = new Date()): number {
	return Math.floor((notAfter.getTime() - now.getTime()) / DAY_MS);
}

/**
 * Expired at notAfter itself (RFC 5280 makes notAfter the last valid instant, but a handshake a moment later
 * fails, and an operator must act before, not at, that second). Otherwise the level by the time left, compared
 * exactly: "under 30 days" means less than 30 × 24 hours, so a certificate with exactly 30 days left is fine.
 */
export function expiryLevel(notAfter: Date, t: ExpiryThresholds, now: Date = new Date()): ExpiryLevel {
	const left = notAfter.getTime() - now.getTime();
	if (left <= 0) return 'expired';
	if (left < t.criticalDays * DAY_MS) return 'critical';
	if (left < t.warnDays * DAY_MS) return 'warning';
	return 'ok';
}
