import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { renewalDue } from './renew';

describe('auto-renew timing', () => {
	const notBefore = new Date('2026-01-01T00:00:00Z');
	const notAfter = new Date('2026-04-01T00:00:00Z'); // 90 days

	it('falls between two thirds and five sixths of the lifetime, the same for a node every time', () => {
		const life = notAfter.getTime() - notBefore.getTime();
		const ids = Array.from({ length: 500 }, () => randomUUID());
		const at = ids.map((id) => (renewalDue(id, notBefore, notAfter).getTime() - notBefore.getTime()) / life);
		expect(Math.min(...at)).toBeGreaterThanOrEqual(2 / 3);
		expect(Math.max(...at)).toBeLessThan(5 / 6);
		expect(renewalDue(ids[0]!, notBefore, notAfter)).toEqual(renewalDue(ids[0]!, notBefore, notAfter));
	});

	it('spreads a fleet issued at one moment over the window: no tenth of it holds more than a fifth of the nodes', () => {
		const life = notAfter.getTime() - notBefore.getTime();
		const buckets = new Array(10).fill(0);
		for (let i = 0; i < 1000; i++) {
			const f = (renewalDue(randomUUID(), notBefore, notAfter).getTime() - notBefore.getTime()) / life;
			buckets[Math.floor(((f - 2 / 3) / (1 / 6)) * 10)]++;
		}
		expect(Math.max(...buckets)).toBeLessThan(200);
		expect(Math.min(...buckets)).toBeGreaterThan(0);
	});
});
