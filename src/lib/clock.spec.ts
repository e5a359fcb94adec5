import { describe, expect, it } from 'vitest';
import { instantOfWallClock } from './clock';

describe('instantOfWallClock', () => {
	it('reads a datetime-local value in the zone given', () => {
		expect(instantOfWallClock('2026-12-01T21:30', 'UTC')?.toISOString()).toBe('2026-12-01T21:30:00.000Z');
		expect(instantOfWallClock('2026-12-01T21:30', 'Europe/Berlin')?.toISOString()).toBe('2026-12-01T20:30:00.000Z');
		expect(instantOfWallClock('2026-07-01T21:30', 'Europe/Berlin')?.toISOString()).toBe('2026-07-01T19:30:00.000Z');
		expect(instantOfWallClock('2026-12-01T21:30:15', 'Asia/Kolkata')?.toISOString()).toBe('2026-12-01T16:00:15.000Z');
		expect(instantOfWallClock('2026-12-31T22:00', 'America/New_York')?.toISOString()).toBe('2027-01-01T03:00:00.000Z');
	});

	it('around daylight-saving changes: a skipped time comes out an hour later, a repeated one is one of its two', () => {
		// Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST.
		expect(instantOfWallClock('2026-03-29T01:30', 'Europe/Berlin')?.toISOString()).toBe('2026-03-29T00:30:00.000Z');
		expect(instantOfWallClock('2026-03-29T02:30', 'Europe/Berlin')?.toISOString()).toBe('2026-03-29T01:30:00.000Z');
		expect(instantOfWallClock('2026-03-29T03:30', 'Europe/Berlin')?.toISOString()).toBe('2026-03-29T01:30:00.000Z');
		// 25 October 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
		expect(['2026-10-25T00:30:00.000Z', '2026-10-25T01:30:00.000Z']).toContain(
			instantOfWallClock('2026-10-25T02:30', 'Europe/Berlin')?.toISOString()
		);
	});

	it('is null for anything that is not a wall-clock time', () => {
		for (const text of [
			'',
			'tomorrow',
			'2026-12-01',
			'2026-12-01 21:30',
			'2026-12-01T21:30Z',
			'2026-04-31T10:00',
			'2026-12-01T24:00'
		]) {
			expect(instantOfWallClock(text, 'UTC'), text).toBeNull();
		}
	});
});
