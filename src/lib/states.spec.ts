import { describe, expect, it } from 'vitest';
import { stageShownState } from './states';

describe('stageShownState', () => {
	const finished = { running: 0, queued: 0 };
	it('shows a running stage of a paused rollout as paused once its nodes have finished', () => {
		expect(stageShownState('paused', { state: 'running', counts: finished })).toBe('paused');
		// Nodes still at work when the pause came: they finish, so the stage is still running.
		expect(stageShownState('paused', { state: 'running', counts: { running: 1, queued: 0 } })).toBe('running');
		expect(stageShownState('paused', { state: 'running', counts: { running: 0, queued: 2 } })).toBe('running');
	});

	it('shows a stage of a running rollout as its own state', () => {
		expect(stageShownState('running', { state: 'running', counts: finished })).toBe('running');
		expect(stageShownState('running', { state: 'done', counts: finished })).toBe('succeeded');
		expect(stageShownState('paused', { state: 'pending', counts: null })).toBe('queued');
	});

	it('shows a stage left running by a rollout that ended as the way it ended', () => {
		for (const end of ['cancelled', 'failed', 'rolled_back'] as const) {
			expect(stageShownState(end, { state: 'running', counts: finished })).toBe(end);
		}
		expect(stageShownState('rolled_back', { state: 'done', counts: finished })).toBe('succeeded');
	});
});
