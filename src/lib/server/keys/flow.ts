import { z } from 'zod';
import { and, eq } from 'drizzle-orm';
import { ServiceError } from '$lib/server/errors';
import type { Flow, TaskEnd } from '$lib/server/engine';
import { db } from '$lib/server/db';
import { keyRotationNodes } from '$lib/server/db/schema';
import {
	cleanupTitle,
	cleanUpAfterAbort,
	nodePhases,
	phaseTitles,
	rotationKeys,
	runPhase,
	type NodePhase
} from './phases';

/*
 * The key rotation's flows. A phase is one run of `ssh-key-phase` across every node in scope, and the driver
 * (driver.ts) starts the next phase only once that run has ended on all of them: the barrier between phases is
 * the run's end. `ssh-key-catchup` finishes, phase after phase, a node that was unreachable while the others
 * went through. `ssh-key-cleanup` takes an aborted rotation's own lines off the nodes where K1 or K3 ran.
 */

const phaseParams = z.object({ rotation_id: z.uuid(), phase: z.enum(nodePhases) }).strict();
export type PhaseParams = z.infer<typeof phaseParams>;

const catchUpParams = z.object({ rotation_id: z.uuid() }).strict();
export type CatchUpParams = z.infer<typeof catchUpParams>;

function parse<T>(schema: z.ZodType<T>, params: unknown): T {
	const r = schema.safeParse(params);
	if (!r.success) throw new ServiceError('validation_failed', 'Not a key rotation', { params: r.error.message });
	return r.data;
}

/** Why a node could not be reached, or null when it was reached and failed otherwise. */
function unreachableReason(end: TaskEnd<unknown>): string | null {
	const f = end.connectError?.failure;
	if (f === 'unreachable' || f === 'timeout' || f === 'disconnected') return end.connectError!.message;
	return null;
}

/** `reached`: the last phase that passed on the node in this task, if any. */
async function recordNodeEnd(rotationId: string, end: TaskEnd<unknown>, reached: NodePhase | null): Promise<void> {
	const where = and(eq(keyRotationNodes.rotationId, rotationId), eq(keyRotationNodes.nodeId, end.node.id));
	const progress = reached ? { reached } : {};
	if (end.state === 'succeeded') {
		if (reached) await db().update(keyRotationNodes).set({ reached, error: null }).where(where);
		return;
	}
	const away = unreachableReason(end);
	await db()
		.update(keyRotationNodes)
		.set(
			away
				? { ...progress, state: 'deferred', error: away, deferredAt: new Date() }
				: { ...progress, error: end.error ?? `ended ${end.state}` }
		)
		.where(where);
}

export const keyPhaseFlow: Flow<PhaseParams> = {
	kind: 'ssh-key-phase',
	title: 'SSH key rotation',
	parseParams: (p) => parse(phaseParams, p),
	steps: [
		{
			name: 'phase',
			deadlineMs: 120_000,
			async do(ctx) {
				ctx.log(phaseTitles[ctx.params.phase]);
				await runPhase(ctx, ctx.params.rotation_id, ctx.params.phase);
			}
		}
	],
	// Every phase can run again: after a crash it simply runs once more.
	inspect: async () => 'restart',
	async finished(end) {
		await recordNodeEnd(end.params.rotation_id, end, end.state === 'succeeded' ? end.params.phase : null);
	}
};

/** The phases a node that comes back still needs, in order. */
export function catchUpPhases(removeSafetyNet: boolean): NodePhase[] {
	return ['survey', 'K1', 'K2', 'K3', 'K4', 'K5', ...(removeSafetyNet ? (['K6'] as const) : [])];
}

export const keyCatchUpFlow: Flow<CatchUpParams> = {
	kind: 'ssh-key-catchup',
	title: 'SSH key rotation: catch up',
	parseParams: (p) => parse(catchUpParams, p),
	steps: nodePhases.map((phase) => ({
		name: phase,
		deadlineMs: 120_000,
		async do(ctx) {
			const { rotation } = await rotationKeys(ctx.params.rotation_id);
			if (phase === 'K6' && !rotation.removeSafetyNet) return;
			const done = (ctx.memo.done as string[] | undefined) ?? [];
			if (done.includes(phase)) return;
			ctx.log(phaseTitles[phase]);
			await runPhase(ctx, ctx.params.rotation_id, phase);
			ctx.memo.done = [...done, phase];
		}
	})),
	inspect: async () => 'restart',
	async finished(end) {
		const done = (end.memo.done as NodePhase[] | undefined) ?? [];
		await recordNodeEnd(end.params.rotation_id, end, done.at(-1) ?? null);
		// A node back that fails for another reason than being away again is not tried again by itself.
		const state = end.state === 'succeeded' ? 'done' : unreachableReason(end) ? null : 'failed';
		if (state) {
			await db()
				.update(keyRotationNodes)
				.set({ state, deferredAt: null })
				.where(and(eq(keyRotationNodes.rotationId, end.params.rotation_id), eq(keyRotationNodes.nodeId, end.node.id)));
		}
	}
};

export const keyCleanupFlow: Flow<CatchUpParams> = {
	kind: 'ssh-key-cleanup',
	title: 'SSH key rotation: clean up after an abort',
	parseParams: (p) => parse(catchUpParams, p),
	steps: [
		{
			name: 'cleanup',
			deadlineMs: 120_000,
			async do(ctx) {
				ctx.log(cleanupTitle);
				await cleanUpAfterAbort(ctx, ctx.params.rotation_id);
			}
		}
	],
	// Removing lines that are already gone changes nothing: after a crash it simply runs once more.
	inspect: async () => 'restart',
	async finished(end) {
		const where = and(
			eq(keyRotationNodes.rotationId, end.params.rotation_id),
			eq(keyRotationNodes.nodeId, end.node.id)
		);
		const away = unreachableReason(end);
		// A node away stays `cleanup` (pending) and is taken again once the health sweep has seen it back.
		await db()
			.update(keyRotationNodes)
			.set(
				end.state === 'succeeded'
					? { state: 'cleaned', error: null, deferredAt: null }
					: away
						? { error: `cleanup pending: ${away}`, deferredAt: new Date() }
						: { state: 'failed', error: `cleanup failed: ${end.error ?? `ended ${end.state}`}`, deferredAt: null }
			)
			.where(where);
	}
};
