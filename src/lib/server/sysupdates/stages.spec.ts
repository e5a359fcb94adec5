import { describe, expect, it } from 'vitest';
import { stagedPhases, stageOf } from './stages';

const n = (id: string, labels: Record<string, string>, roles = ['web'], controlPlane = false) => ({
	id,
	labels,
	roles,
	controlPlane
});

describe('staged patching', () => {
	it('a node belongs to the first label of the order it carries, else to the rest', () => {
		const order = ['env=canary', 'env=staging'];
		expect(stageOf({ labels: { env: 'staging' } }, order)).toBe(1);
		expect(stageOf({ labels: { env: 'canary', tier: 'x' } }, order)).toBe(0);
		expect(stageOf({ labels: { env: 'prod' } }, order)).toBe(2);
		expect(stageOf({ labels: {} }, order)).toBe(2);
		expect(stageOf({ labels: { env: 'canary=1' } }, ['env=canary=1'])).toBe(0);
	});

	it('stages run in order, each gated, the rest after them and the control plane last', () => {
		const list = [
			n('p1', { env: 'prod' }),
			n('s1', { env: 'staging' }, ['db']),
			n('c1', { env: 'canary' }),
			n('cp', { env: 'canary' }, ['web'], true),
			n('p2', { env: 'prod' }, ['db'])
		];
		const sizes = new Map([
			['web', 3],
			['db', 2]
		]);
		const plan = stagedPhases(list, ['env=canary', 'env=staging'], 0, sizes);
		expect(Object.fromEntries(plan.phaseOf)).toEqual({ c1: 0, s1: 1, p1: 2, p2: 2, cp: 3 });
		expect(plan.criticalPhases).toEqual([0, 1, 3]);
		expect(plan.stages.map((s) => [s.label, s.controlPlane, s.nodeIds, s.critical])).toEqual([
			['env=canary', false, ['c1'], true],
			['env=staging', false, ['s1'], true],
			[null, false, ['p1', 'p2'], false],
			[null, true, ['cp'], true]
		]);
	});

	it('within a stage the reboot rule still holds: one node of a role at a time', () => {
		const list = [n('a', { env: 'canary' }), n('b', { env: 'canary' }), n('c', {})];
		const plan = stagedPhases(list, ['env=canary'], 0, new Map([['web', 3]]));
		expect(Object.fromEntries(plan.phaseOf)).toEqual({ a: 0, b: 1, c: 2 });
		expect(plan.criticalPhases).toEqual([0, 1]);
	});

	it('without an order it is the plain reboot order: only the control plane is critical', () => {
		const list = [n('a', {}), n('b', {}, ['db']), n('cp', {}, ['web'], true)];
		const plan = stagedPhases(list, [], 0, new Map([['web', 2]]));
		expect(Object.fromEntries(plan.phaseOf)).toEqual({ a: 0, b: 0, cp: 1 });
		expect(plan.criticalPhases).toEqual([1]);
	});
});
