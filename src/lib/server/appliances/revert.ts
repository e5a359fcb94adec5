import { and, eq, inArray } from 'drizzle-orm';
import { z } from 'zod';
import { db } from '$lib/server/db';
import { applianceUpdates, rolloutNodes, type Rollout } from '$lib/server/db/schema';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import { rebootAndReconnect, releaseConnection, run, type Slot } from './remote';
import { readSlots } from './slots';

/*
 * The fleet rollback of an appliance release (docs/appliances.md, "Rollouts"): each appliance the rollout
 * updated boots the slot it ran before (still there: the update wrote the other one), and that slot must pass
 * the health gate again before it is committed. A gate that fails sends the appliance back to the slot it was
 * on, so a rollback never leaves an appliance on a slot that did not pass its gate either.
 */

export const applianceRevertParams = z
	.object({
		rollout_id: z.uuid(),
		/** Per node id, the slot it ran before the rollout. */
		slots: z.record(z.string(), z.enum(['a', 'b'])),
		reboot_timeout_seconds: z.number().int().min(5).max(3600).default(600)
	})
	.strict();
export type ApplianceRevertParams = z.infer<typeof applianceRevertParams>;

interface Memo {
	/** The appliance was already on its previous slot, committed: nothing to do. */
	already?: boolean;
	rebootIssued?: boolean;
	committed?: boolean;
}

type Ctx = StepContext<ApplianceRevertParams>;
const memoOf = (ctx: Ctx) => ctx.memo as Memo;
const previousSlot = (ctx: Ctx): Slot => {
	const slot = ctx.params.slots[ctx.node.id];
	if (!slot) throw new StepFailed('the rollout recorded no previous slot for this appliance');
	return slot;
};
const report = (ctx: Ctx) => readSlots(ctx);

export const applianceRevertFlow: Flow<ApplianceRevertParams> = {
	kind: 'appliance-revert',
	title: 'Appliance rollback',
	parseParams: (p) => applianceRevertParams.parse(p),
	steps: [
		{
			name: 'prepare',
			deadlineMs: 60_000,
			async do(ctx) {
				const back = previousSlot(ctx);
				const found = await report(ctx);
				if (found.active === back && found.good === back) {
					memoOf(ctx).already = true;
					ctx.log(`already on slot ${back}, committed`);
					return;
				}
				if (found.active !== found.good) {
					throw new StepFailed(
						`slot ${found.active} is booted but not committed (the good slot is ${found.good}): finish or revert that first`
					);
				}
				// The operator's verb: the previous slot was verified when it was installed, and must pass the gate again.
				await run(ctx, sh`flotilla-slot --rollback`);
				ctx.log(`slot ${found.active} is booted; going back to slot ${back}`);
			}
		},
		{
			name: 'reboot',
			deadlineMs: 3 * 3_600_000,
			async do(ctx) {
				const memo = memoOf(ctx);
				if (memo.already) return;
				const back = previousSlot(ctx);
				memo.rebootIssued = true;
				await rebootAndReconnect(ctx, ctx.params.reboot_timeout_seconds);
				const found = await report(ctx);
				if (found.active !== back) {
					throw new StepFailed(
						`booted slot ${found.active}, not slot ${back}${found.fallback ? `: ${found.fallback}` : ''}`
					);
				}
				await run(ctx, sh`flotilla-slot commit`, { deadlineMs: 300_000 });
				memo.committed = true;
				await report(ctx);
				ctx.log(`back on slot ${back}, committed`);
			},
			async undo(ctx) {
				const memo = memoOf(ctx);
				if (!memo.rebootIssued || memo.committed) return;
				const found = await report(ctx);
				await run(ctx, sh`flotilla-slot revert`);
				if (found.active === found.good) return;
				ctx.log(`slot ${found.active} did not pass its gate: back to slot ${found.good}`);
				await rebootAndReconnect(ctx, ctx.params.reboot_timeout_seconds);
				const again = await report(ctx);
				if (again.active !== again.good) throw new StepFailed(`still on slot ${again.active} after reverting`);
			}
		}
	],
	/** After the console stopped mid-task: the appliance says whether it is back, waiting for its gate, or not. */
	async inspect(ctx) {
		const memo = memoOf(ctx);
		if (!memo.rebootIssued) return 'restart';
		const back = previousSlot(ctx);
		const found = await report(ctx);
		if (found.active === back && found.good === back) {
			memo.committed = true;
			return 'completed';
		}
		if (found.active !== back) return 'rollback';
		const gate = await run(ctx, sh`flotilla-slot commit`, { deadlineMs: 300_000, allowFailure: true });
		await report(ctx);
		if (gate.exitCode !== 0) return 'rollback';
		memo.committed = true;
		return 'completed';
	},

	async finished(end) {
		releaseConnection(end.task.id);
		await db()
			.update(rolloutNodes)
			.set({
				state: end.state === 'succeeded' ? 'reverted' : `revert_${end.state}`,
				error: end.error,
				updatedAt: new Date()
			})
			.where(and(eq(rolloutNodes.rolloutId, end.params.rollout_id), eq(rolloutNodes.nodeId, end.node.id)));
	}
};

/** The run of a fleet rollback: each appliance the rollout updated, with the slot it ran before. */
export async function applianceRevertRun(rollout: Rollout, nodeIds: string[]) {
	const rows = nodeIds.length
		? await db()
				.select({ nodeId: applianceUpdates.nodeId, fromSlot: applianceUpdates.fromSlot })
				.from(applianceUpdates)
				.where(
					and(
						eq(applianceUpdates.rolloutId, rollout.id),
						eq(applianceUpdates.state, 'succeeded'),
						inArray(applianceUpdates.nodeId, nodeIds)
					)
				)
		: [];
	const slots = Object.fromEntries(
		rows.filter((r): r is { nodeId: string; fromSlot: Slot } => !!r.fromSlot).map((r) => [r.nodeId, r.fromSlot])
	);
	return { kind: applianceRevertFlow.kind, params: { rollout_id: rollout.id, slots } };
}
