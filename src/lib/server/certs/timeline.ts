/**
 * How many certificates expire in each of the next weeks (the page's timeline): week 0 starts now. Expired
 * ones are counted apart, and nothing past the horizon is shown.
 */
export interface ExpiryWeek {
	/** The week's first instant (ISO). */
	start: string;
	count: number;
}

const WEEK_MS = 7 * 86_400_000;

export function expiryTimeline(notAfters: Date[], now: Date, days = 90): { expired: number; weeks: ExpiryWeek[] } {
	const weeks = Math.ceil(days / 7);
	const out: ExpiryWeek[] = Array.from({ length: weeks }, (_, i) => ({
		start: new Date(now.getTime() + i * WEEK_MS).toISOString(),
		count: 0
	}));
	let expired = 0;
	for (const t of notAfters) {
		const ms = t.getTime() - now.getTime();
		if (ms <= 0) expired++;
		else if (ms < days * 86_400_000) out[Math.floor(ms / WEEK_MS)]!.count++;
	}
	return { expired, weeks: out };
}
