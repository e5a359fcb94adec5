import { describe, expect, it } from 'vitest';
import { daysLeft, expiryLevel } from './expiry';

const t = { warnDays: 30, criticalDays: 7 };
const at = (iso: string) => new Date(iso);

describe('certificate expiry', () => {
	it('exactly 30 days left is not a warning; one millisecond less is', () => {
		const now = at('2026-03-01T12:00:00Z');
		expect(expiryLevel(at('2026-03-31T12:00:00Z'), t, now)).toBe('ok');
		expect(daysLeft(at('2026-03-31T12:00:00Z'), now)).toBe(30);
		expect(expiryLevel(at('2026-03-31T11:59:59.999Z'), t, now)).toBe('warning');
		expect(daysLeft(at('2026-03-31T11:59:59.999Z'), now)).toBe(29);
	});

	it('exactly 7 days left is a warning, under is critical, at notAfter it is expired', () => {
		const now = at('2026-06-10T00:00:00Z');
		expect(expiryLevel(at('2026-06-17T00:00:00Z'), t, now)).toBe('warning');
		expect(expiryLevel(at('2026-06-16T23:59:59Z'), t, now)).toBe('critical');
		expect(expiryLevel(now, t, now)).toBe('expired');
		expect(daysLeft(now, now)).toBe(0);
		expect(daysLeft(at('2026-06-09T23:00:00Z'), now)).toBe(-1);
	});

	it('a leap day counts as a day', () => {
		// 2028 is a leap year: Feb 28 → Mar 1 is two days.
		expect(daysLeft(at('2028-03-01T00:00:00Z'), at('2028-02-28T00:00:00Z'))).toBe(2);
		expect(daysLeft(at('2027-03-01T00:00:00Z'), at('2027-02-28T00:00:00Z'))).toBe(1);
		// 30 days from Feb 1 in a leap year is Mar 2.
		expect(expiryLevel(at('2028-03-02T00:00:00Z'), t, at('2028-02-01T00:00:00Z'))).toBe('ok');
		expect(expiryLevel(at('2028-03-01T23:59:59Z'), t, at('2028-02-01T00:00:00Z'))).toBe('warning');
	});

	it('time zone offsets name the same instant: the level does not depend on how a date was written', () => {
		const notAfter = at('2026-10-25T01:30:00+02:00');
		const now = at('2026-09-24T23:30:00Z');
		// 30 days exactly, though the span crosses the end of summer time in Europe.
		expect(daysLeft(notAfter, now)).toBe(30);
		expect(expiryLevel(notAfter, t, now)).toBe('ok');
		expect(expiryLevel(notAfter, t, at('2026-09-25T01:30:00.001+02:00'))).toBe('warning');
	});

	it('thresholds are configurable', () => {
		const now = at('2026-01-01T00:00:00Z');
		expect(expiryLevel(at('2026-02-10T00:00:00Z'), { warnDays: 60, criticalDays: 14 }, now)).toBe('warning');
		expect(expiryLevel(at('2026-01-10T00:00:00Z'), { warnDays: 60, criticalDays: 14 }, now)).toBe('critical');
	});
});
