import { expect } from 'vitest';
import { getRun } from '../../src/lib/server/engine/runs';
import type { RunState } from '../../src/lib/server/db/schema';

/** Polls a run until it reaches one of `states`; fails the test with the run's last state otherwise. */
export async function waitForRun(id: string, states: RunState[], timeoutMs = 30_000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const run = await getRun(id);
		if (states.includes(run.state) && (run.state === 'paused' || run.endedAt)) return run;
		if (Date.now() > until) {
			expect.fail(`run ${run.number} is ${run.state} (${JSON.stringify(run.counts)}), expected ${states.join('/')}`);
		}
		await new Promise((r) => setTimeout(r, 100));
	}
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 20_000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const v = await probe();
		if (v) return v;
		if (Date.now() > until) expect.fail(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}
