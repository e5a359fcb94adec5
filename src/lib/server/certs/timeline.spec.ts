import { describe, expect, it } from 'vitest';
import { expiryTimeline } from './timeline';

describe('the expiry timeline', () => {
	it('counts per week from now, expired apart, nothing past the horizon', () => {
		const now = new Date('2028-02-27T12:00:00Z');
		const at = (days: number) => new Date(now.getTime() + days * 86_400_000);
		const t = expiryTimeline([at(-1), at(0), at(0.5), at(6.99), at(7), at(13), at(89.9), at(90), at(400)], now);
		expect(t.expired).toBe(2);
		expect(t.weeks).toHaveLength(13);
		expect(t.weeks.map((w) => w.count)).toEqual([2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
		// Weeks are 7 × 24 hours from now: across the leap day, week 1 starts on Mar 5.
		expect(t.weeks[1]!.start).toBe('2028-03-05T12:00:00.000Z');
	});
});
