import { describe, expect, it } from 'vitest';
import type { Rollout } from '$lib/server/db/schema';
import { thresholdReason } from './driver';

const rollout = (ack = 0) =>
	({
		failureThresholdPercent: 10,
		minFinishedNodes: 3,
		stages: [
			{ percent: 25, bakeSeconds: 0, state: 'done' },
			{ percent: 50, bakeSeconds: 0, state: 'running', acknowledgedFailures: ack },
			{ percent: 100, bakeSeconds: 0, state: 'pending' }
		]
	}) as unknown as Rollout;

const counts = (
	c: Partial<Record<'succeeded' | 'failed' | 'rolled_back' | 'fell_back' | 'running' | 'queued', number>>
) => ({
	total: 5,
	queued: 0,
	running: 0,
	succeeded: 0,
	failed: 0,
	rolled_back: 0,
	cancelled: 0,
	skipped: 0,
	needs_attention: 0,
	...c
});

describe('a stage against its failure threshold', () => {
	it('does not trip before the minimum number of nodes finished', () => {
		expect(thresholdReason(rollout(), 1, counts({ rolled_back: 1, succeeded: 1, running: 3 }))).toBeNull();
	});
	it('trips once enough finished and the rate passes the threshold, naming stage and rate', () => {
		expect(thresholdReason(rollout(), 1, counts({ rolled_back: 1, succeeded: 2, running: 2 }))).toBe(
			'stage 2 of 3 (50%): 1 of 3 finished nodes failed (33% > the 10% threshold)'
		);
	});
	it('a rate at the threshold does not trip', () => {
		const big = { ...counts({ failed: 1, succeeded: 9 }), total: 10 };
		expect(thresholdReason(rollout(), 1, big)).toBeNull();
	});
	it('a small stage trips with fewer finished nodes than the minimum', () => {
		expect(thresholdReason(rollout(), 1, { ...counts({ failed: 1 }), total: 1 })).toMatch(/1 of 1 finished/);
	});
	it('failures acknowledged on resume do not trip it again; a new one does', () => {
		expect(thresholdReason(rollout(2), 1, counts({ rolled_back: 2, succeeded: 2, running: 1 }))).toBeNull();
		expect(thresholdReason(rollout(2), 1, counts({ rolled_back: 3, succeeded: 2 }))).toMatch(/3 of 5 finished/);
	});
	it('a node that fell back after its task succeeded counts as a failure of its stage', () => {
		// Two tasks succeeded, one of whose appliances later went back to its good slot on its own.
		expect(thresholdReason(rollout(), 1, counts({ succeeded: 1, fell_back: 1, running: 3 }))).toBeNull();
		expect(thresholdReason(rollout(), 1, counts({ succeeded: 2, fell_back: 1, running: 2 }))).toBe(
			'stage 2 of 3 (50%): 1 of 3 finished nodes failed (33% > the 10% threshold)'
		);
	});
});
