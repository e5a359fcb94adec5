import { describe, expect, it } from 'vitest';
import { batchPercents } from './batches';

/** What each stage takes of `total` nodes, as the membership rule counts them (docs/releases.md, "Stages"). */
function sizes(total: number, percents: number[]): number[] {
	let before = 0;
	return percents.map((p) => {
		const upTo = p === 100 ? total : Math.ceil((p * total) / 100);
		const size = upTo - before;
		before = upTo;
		return size;
	});
}

describe('batchPercents', () => {
	it('cuts the nodes into batches of the size asked, the last one taking the rest', () => {
		expect(sizes(12, batchPercents(12, 5))).toEqual([5, 5, 2]);
		expect(sizes(10, batchPercents(10, 5))).toEqual([5, 5]);
		expect(sizes(7, batchPercents(7, 3))).toEqual([3, 3, 1]);
		expect(sizes(250, batchPercents(250, 30))).toEqual([30, 30, 30, 30, 30, 30, 30, 30, 10]);
	});

	it('gives one stage when one batch holds every node', () => {
		expect(batchPercents(4, 5)).toEqual([100]);
		expect(batchPercents(5, 5)).toEqual([100]);
		expect(batchPercents(1, 1)).toEqual([100]);
	});

	it('makes at most ten batches, growing them evenly beyond that', () => {
		const percents = batchPercents(95, 5);
		expect(percents).toHaveLength(10);
		expect(sizes(95, percents)).toEqual([10, 10, 10, 10, 10, 10, 10, 10, 10, 5]);
	});

	it('keeps percentages growing even when the fleet is larger than 100 nodes', () => {
		for (const [total, size] of [
			[1000, 100],
			[333, 40],
			[101, 11]
		] as const) {
			const percents = batchPercents(total, size);
			for (let i = 1; i < percents.length; i++) expect(percents[i]!).toBeGreaterThan(percents[i - 1]!);
			expect(percents.at(-1)).toBe(100);
			expect(sizes(total, percents).reduce((a, b) => a + b, 0)).toBe(total);
		}
	});
});
