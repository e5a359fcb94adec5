import { setTimeout as sleep } from 'node:timers/promises';
import type { Flow } from '../../src/lib/server/engine/flows.ts';
import { sh } from '../../src/lib/server/ssh/shell.ts';

export const stepCount = 5;
export const stepMs = 50;

/** The benchmark's flow: 5 steps, each a real `sleep 0.05` on the node through ctx.exec. */
export const sshSleepFlow: Flow = {
	kind: 'bench-ssh-sleep',
	steps: Array.from({ length: stepCount }, (_, i) => ({
		name: `step-${i + 1}`,
		async do(ctx) {
			await ctx.exec(sh`sleep ${String(stepMs / 1000)}`);
		}
	}))
};

/**
 * Diagnostic: the same 5 steps waiting 50 ms in the console instead of on the node, to separate the
 * engine's own overhead from the exec round trips. The task still opens its SSH connection to the node.
 */
export const localSleepFlow: Flow = {
	kind: 'bench-local-sleep',
	steps: Array.from({ length: stepCount }, (_, i) => ({
		name: `step-${i + 1}`,
		async do(ctx) {
			await sleep(stepMs, undefined, { signal: ctx.signal });
		}
	}))
};
