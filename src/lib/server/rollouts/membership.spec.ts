import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { membersOfStage, previewStages, rankOf } from './membership';

const fleet = Array.from({ length: 20 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
const rollout = '11111111-2222-4333-8444-555555555555';

describe('stage membership', () => {
	it('is deterministic: the same rollout and fleet give the same stages, whatever the fleet order', () => {
		const a = previewStages(rollout, [10, 50, 100], fleet);
		const b = previewStages(rollout, [10, 50, 100], [...fleet].reverse());
		expect(b).toEqual(a);
		expect(a.map((s) => s.length)).toEqual([2, 8, 10]);
		expect(new Set(a.flat()).size).toBe(20);
		expect(previewStages(rollout, [5, 25, 100], fleet).map((s) => s.length)).toEqual([1, 4, 15]);
	});

	it('differs between rollouts, so the same nodes are not always first', () => {
		const other = previewStages('99999999-2222-4333-8444-555555555555', [10, 50, 100], fleet);
		expect(other[0]).not.toEqual(previewStages(rollout, [10, 50, 100], fleet)[0]);
	});

	it('a node added after stage 1 started lands in a later stage, and earlier members stay put', () => {
		const first = membersOfStage(rollout, [10, 50, 100], 0, fleet, new Map());
		const assigned = new Map(first.map((id) => [id, 0]));
		// A node whose rank puts it ahead of every stage-1 member: had it been there, it would have been a canary.
		let late = randomUUID();
		const lowest = first.map((id) => rankOf(rollout, id)).sort()[0]!;
		while (rankOf(rollout, late) >= lowest) late = randomUUID();
		expect(previewStages(rollout, [10, 50, 100], [...fleet, late])[0]).toContain(late);

		const grown = [...fleet, late];
		const second = membersOfStage(rollout, [10, 50, 100], 1, grown, assigned);
		expect(second).toContain(late);
		expect(second.some((id) => first.includes(id))).toBe(false);
		// 50% of 21 nodes is 11 by the end of stage 2: 2 already ran, so 9 join now.
		expect(second).toHaveLength(9);
		for (const id of second) assigned.set(id, 1);
		const last = membersOfStage(rollout, [10, 50, 100], 2, grown, assigned);
		expect([...first, ...second, ...last].sort()).toEqual([...grown].sort());
	});
});
