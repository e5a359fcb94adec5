import { describe, expect, it } from 'vitest';
import { isTimeZone } from '$lib/schemas/system-updates';
import { lastFiring, parseCron } from '$lib/clock';
import { insideWindow, nextWindow, skipNextUntil, type WindowSpec } from './windows-time';

const at = (iso: string) => new Date(iso);

/** 02:00–05:00 New York time, Sunday to Thursday: no updates on Friday and Saturday. */
const NEW_YORK: WindowSpec = { start: '02:00', end: '05:00', timeZone: 'America/New_York', days: [0, 1, 2, 3, 4] };

describe('maintenance windows', () => {
	it('opens and closes on New York wall-clock time, winter and summer', () => {
		// Monday 9 March 2026, EDT (UTC-4): 02:00 local is 06:00Z.
		expect(insideWindow(NEW_YORK, at('2026-03-09T05:59:00Z'))).toBe(false);
		expect(insideWindow(NEW_YORK, at('2026-03-09T06:00:00Z'))).toBe(true);
		expect(insideWindow(NEW_YORK, at('2026-03-09T08:59:00Z'))).toBe(true);
		expect(insideWindow(NEW_YORK, at('2026-03-09T09:00:00Z'))).toBe(false);
		// Monday 12 January 2026, EST (UTC-5): 02:00 local is 07:00Z.
		expect(insideWindow(NEW_YORK, at('2026-01-12T06:30:00Z'))).toBe(false);
		expect(insideWindow(NEW_YORK, at('2026-01-12T07:00:00Z'))).toBe(true);
	});

	it('the night clocks spring forward, 02:00 does not exist: the window runs 03:00–05:00 EDT', () => {
		// Sunday 8 March 2026: 01:59 EST (06:59Z) is followed by 03:00 EDT (07:00Z).
		expect(insideWindow(NEW_YORK, at('2026-03-08T06:59:00Z'))).toBe(false);
		expect(nextWindow(NEW_YORK, at('2026-03-08T00:00:00Z'))).toEqual({
			opens: at('2026-03-08T07:00:00Z'),
			closes: at('2026-03-08T09:00:00Z')
		});
	});

	it('the night clocks fall back, the window is three real hours on standard time', () => {
		// Sunday 1 November 2026: 01:00–01:59 happens twice, 02:00 EST is 07:00Z.
		expect(insideWindow(NEW_YORK, at('2026-11-01T06:30:00Z'))).toBe(false);
		expect(nextWindow(NEW_YORK, at('2026-11-01T00:00:00Z'))).toEqual({
			opens: at('2026-11-01T07:00:00Z'),
			closes: at('2026-11-01T10:00:00Z')
		});
	});

	it('no window on Friday and Saturday: the next opens Sunday', () => {
		expect(insideWindow(NEW_YORK, at('2026-03-13T07:00:00Z'))).toBe(false);
		expect(nextWindow(NEW_YORK, at('2026-03-13T12:00:00Z'))?.opens).toEqual(at('2026-03-15T06:00:00Z'));
	});

	it('a window past midnight belongs to the day it opens on', () => {
		const berlin: WindowSpec = { start: '22:00', end: '02:00', timeZone: 'Europe/Berlin', days: [5] };
		expect(insideWindow(berlin, at('2026-03-13T21:30:00Z'))).toBe(true); // Friday 22:30 CET
		expect(insideWindow(berlin, at('2026-03-14T00:30:00Z'))).toBe(true); // Saturday 01:30 CET
		expect(insideWindow(berlin, at('2026-03-14T01:00:00Z'))).toBe(false); // Saturday 02:00 CET
		expect(insideWindow(berlin, at('2026-03-14T21:30:00Z'))).toBe(false); // Saturday 22:30 CET
	});

	it('the same instant is inside one zone’s window and outside another’s', () => {
		const kolkata: WindowSpec = { start: '02:00', end: '05:00', timeZone: 'Asia/Kolkata', days: [0, 1, 2, 3, 4, 5, 6] };
		// 21:00Z on Monday 9 March is 02:30 on Tuesday in Kolkata (UTC+5:30) and 17:00 in New York.
		expect(insideWindow(kolkata, at('2026-03-09T21:00:00Z'))).toBe(true);
		expect(insideWindow(NEW_YORK, at('2026-03-09T21:00:00Z'))).toBe(false);
	});

	it('skip-next shuts the next window only; the one after opens as usual', () => {
		const until = skipNextUntil(NEW_YORK, at('2026-03-09T00:00:00Z'));
		expect(until).toEqual(at('2026-03-09T09:00:00Z'));
		const skipped = { ...NEW_YORK, skipUntil: until };
		expect(insideWindow(skipped, at('2026-03-09T07:00:00Z'))).toBe(false);
		expect(insideWindow(skipped, at('2026-03-10T07:00:00Z'))).toBe(true);
		// Asked during a window, it skips the rest of that one.
		expect(skipNextUntil(NEW_YORK, at('2026-03-09T07:30:00Z'))).toEqual(at('2026-03-09T09:00:00Z'));
	});

	it('a window on no day never opens', () => {
		expect(nextWindow({ ...NEW_YORK, days: [] }, at('2026-03-09T00:00:00Z'))).toBeNull();
	});
});

describe('the scan schedule', () => {
	const daily = parseCron('0 2 * * *');

	it('fires at 02:00 in its zone, once', () => {
		// Monday 30 March 2026, CEST (UTC+2): 02:00 Berlin is 00:00Z.
		expect(lastFiring(daily, 'Europe/Berlin', at('2026-03-29T23:00:00Z'), at('2026-03-30T00:00:30Z'))).toEqual(
			at('2026-03-30T00:00:00Z')
		);
		expect(lastFiring(daily, 'Europe/Berlin', at('2026-03-30T00:00:00Z'), at('2026-03-30T12:00:00Z'))).toBeNull();
		expect(lastFiring(daily, 'UTC', at('2026-03-30T01:00:00Z'), at('2026-03-30T02:00:00Z'))).toEqual(
			at('2026-03-30T02:00:00Z')
		);
	});

	it('a skipped wall-clock time never fires; a repeated one fires on its first occurrence', () => {
		// Sunday 29 March 2026 in Berlin: 02:00–02:59 does not exist.
		expect(lastFiring(daily, 'Europe/Berlin', at('2026-03-28T23:00:00Z'), at('2026-03-29T12:00:00Z'))).toBeNull();
		// Sunday 25 October 2026: 02:30 happens at 00:30Z (CEST) and again at 01:30Z (CET).
		const halfPast = parseCron('30 2 * * *');
		expect(lastFiring(halfPast, 'Europe/Berlin', at('2026-10-24T22:00:00Z'), at('2026-10-25T03:00:00Z'))).toEqual(
			at('2026-10-25T00:30:00Z')
		);
	});

	it('ranges, lists, steps and day rules', () => {
		const c = parseCron('*/15 1-3 * * 1,5');
		expect([...c.minute]).toEqual([0, 15, 30, 45]);
		expect([...c.hour]).toEqual([1, 2, 3]);
		expect([...c.weekday]).toEqual([1, 5]);
		expect([...parseCron('0 0 * * 7').weekday]).toEqual([0]);
		for (const bad of ['', '* * * *', '60 * * * *', '* 24 * * *', '5-1 * * * *', 'a * * * *', '*/0 * * * *']) {
			expect(() => parseCron(bad), bad).toThrow();
		}
	});

	it('time zones are checked', () => {
		expect(isTimeZone('America/New_York')).toBe(true);
		expect(isTimeZone('Mars/Olympus')).toBe(false);
	});
});
