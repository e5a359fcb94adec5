import { z } from 'zod';
import type { Flow, Step } from '../../src/lib/server/engine/flows';
import { sh } from '../../src/lib/server/ssh/shell';

const params = z.object({
	/** 1-based position of the step that fails (exits 1) on the nodes in `on`. */
	fail_at: z.number().int().min(1).max(4).optional(),
	/** 1-based position of the step that hangs (sleep 600) on the nodes in `on`. */
	hang_at: z.number().int().min(1).max(4).optional(),
	/** Node names the fault applies to; all nodes when absent. */
	on: z.array(z.string()).optional(),
	/** Seconds each step sleeps on the node. */
	sleep_s: z.number().min(0).max(60).default(0),
	step_deadline_ms: z.number().int().positive().optional(),
	/** The undo of this step fails (to prove a failed rollback needs attention). */
	undo_fails_at: z.number().int().min(1).max(4).optional()
});
export type SequenceParams = z.infer<typeof params>;

/**
 * A four-step flow for engine tests: every step prints `do-N` and every undo `undo-N` on the node, so the
 * order of what ran is visible in the task's log and its step rows; faults are chosen per run.
 */
export const sequenceFlow: Flow<SequenceParams> = {
	kind: 'test-sequence',
	parseParams: (p) => params.parse(p),
	steps: [1, 2, 3, 4].map((n): Step<SequenceParams> => ({
		name: `step-${n}`,
		async do(ctx) {
			const p = ctx.params;
			const targeted = !p.on || p.on.includes(ctx.node.name);
			const options = p.step_deadline_ms ? { deadlineMs: p.step_deadline_ms } : {};
			if (targeted && p.hang_at === n) await ctx.exec(sh`sleep 600`, options);
			if (targeted && p.fail_at === n) await ctx.exec(sh`echo ${`fail-${n}`} >&2; exit 1`);
			await ctx.exec(sh`echo ${`do-${n}`}`);
			if (p.sleep_s) await ctx.exec(sh`sleep ${String(p.sleep_s)}`);
		},
		async undo(ctx) {
			const targeted = !ctx.params.on || ctx.params.on.includes(ctx.node.name);
			if (targeted && ctx.params.undo_fails_at === n) await ctx.exec(sh`echo ${`undo-fail-${n}`} >&2; exit 1`);
			await ctx.exec(sh`echo ${`undo-${n}`}`);
		}
	}))
};
