import { describe, expect, it } from 'vitest';
import { delayAfter } from './throttle';
import { generateSecret, hashToken } from './tokens';

describe('secrets', () => {
	it('are 160 random bits in base32, never repeated', () => {
		const seen = new Set(Array.from({ length: 1000 }, generateSecret));
		expect(seen.size).toBe(1000);
		for (const s of seen) expect(s).toMatch(/^[a-z2-7]{32}$/);
	});

	it('are stored as their SHA-256', () => {
		expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
	});
});

describe('sign-in delays', () => {
	it('start after the free attempts and double up to fifteen minutes', () => {
		expect([5, 6, 7, 8, 9].map((n) => delayAfter(n, 'user'))).toEqual([0, 1, 2, 4, 8]);
		expect(delayAfter(20, 'ip')).toBe(0);
		expect(delayAfter(21, 'ip')).toBe(1);
		expect(delayAfter(100, 'user')).toBe(900);
	});
});
