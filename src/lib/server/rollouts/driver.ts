import { and, count, eq, inArray, sql } from 'drizzle-orm';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { rolloutNodes, rollouts, type Rollout, type RolloutStage, type RolloutState } from '$lib/server/db/schema';
import {
	cancelRun,
	createClaimedRun,
	createRun,
	getRun,
	pauseRun,
	recordEvent,
	resumeRun,
	type RunSummary
} from '$lib/server/engine';
import { conflict, ServiceError } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { assertAllowedVersion, getRelease, releasesForCommits } from '$lib/server/releases/releases';
import { membersOfStage } from './membership';
import { releaseKindOf, type ReleaseKind } from './release-kinds';
import { activeRolloutStates, getRollout } from './rollouts';
import { resolveTarget } from './targets';
import { orderByWindow } from './windows';

/*
 * The rollout driver (docs/releases.md, "How a rollout moves"). Everything it needs is in the database: the
 * rollout's state, its stages (each with the run that executes it) and its nodes. A turn looks at every active
 * rollout and moves it one decision at a time — start a stage, judge it, finish it, wait for approval — so a
 * console that restarts simply carries on at the next turn. Turns come from the engine's periodic job; controls
 * (advance, resume, …) take a turn for their rollout at once.
 */

const ENDED_RUN = ['succeeded', 'failed', 'cancelled'];
/** Rollout node states that are failures: their task's, and `fell_back` (failed after its task succeeded). */
const FAILED_NODES = ['failed', 'rolled_back', 'fell_back'] as const;

/** A stage's tasks by state; `fell_back`: of those that succeeded, the nodes that failed afterwards. */
type Counts = RunSummary['counts'] & { fell_back?: number };

export function failuresOf(c: Counts): { failed: number; finished: number } {
	const failed = c.failed + c.rolled_back + (c.fell_back ?? 0);
	return { failed, finished: failed + c.succeeded };
}

/**
 * The stage's counts as the threshold judges them: its run's tasks, less the succeeded ones whose node failed
 * after its task ended (`fell_back`: an appliance that went back to its good slot on its own, found by the
 * health sweep, docs/appliances.md "Fallbacks"), which count as failures instead.
 */
export async function stageCounts(r: Rollout, k: number, counts: RunSummary['counts']): Promise<Counts> {
	const [row] = await db()
		.select({ n: count() })
		.from(rolloutNodes)
		.where(and(eq(rolloutNodes.rolloutId, r.id), eq(rolloutNodes.stage, k), eq(rolloutNodes.state, 'fell_back')));
	const late = Math.min(row?.n ?? 0, counts.succeeded);
	return late ? { ...counts, succeeded: counts.succeeded - late, fell_back: late } : counts;
}

/**
 * Writes the rollout's new state if it is still in `from`, and — when it writes stages — if its stages are still
 * the ones `r` read: another console may have decided meanwhile (started a stage, given it its run), and a
 * decision taken on what it saw before would undo that. The console that finds them changed does nothing.
 */
async function transition(r: Rollout, from: RolloutState[], set: Partial<Rollout>): Promise<Rollout | null> {
	const [row] = await db()
		.update(rollouts)
		.set(set)
		.where(
			and(eq(rollouts.id, r.id), inArray(rollouts.state, from), set.stages ? eq(rollouts.stages, r.stages) : undefined)
		)
		.returning();
	if (row && set.state && set.state !== r.state) {
		await recordEvent({
			type: 'rollout.state',
			data: {
				rollout_id: r.id,
				number: r.number,
				state: set.state,
				reason: set.reason ?? null,
				stage: row.currentStage
			}
		});
	}
	return row ?? null;
}

function withStage(r: Rollout, k: number, patch: Partial<RolloutStage>): RolloutStage[] {
	return r.stages.map((s, i) => (i === k ? { ...s, ...patch } : s));
}

function stageLabel(r: Rollout, k: number): string {
	return `stage ${k + 1} of ${r.stages.length} (${r.stages[k]!.percent}%)`;
}

/**
 * When the stage after `k` may start, or null when it may start now. A release whose nodes do not bake in their
 * own task (an appliance image: docs/appliances.md, "Rollouts") waits the stage's bake once the stage ended, so
 * that its nodes are watched for that long before the next stage takes more.
 */
async function nextStageAt(r: Rollout, k: number): Promise<Date | null> {
	const stage = r.stages[k]!;
	if (!stage.bakeSeconds || !stage.endedAt) return null;
	const kind = await releaseKindOf(await getRelease(r.releaseId));
	if (!kind?.bakesBetweenStages) return null;
	const at = new Date(new Date(stage.endedAt).getTime() + stage.bakeSeconds * 1000);
	return at > new Date() ? at : null;
}

/** Assigns the stage's nodes (the target as it is now) and starts its run; an empty stage is done at once. */
async function startStage(r: Rollout, k: number, actor: Actor = systemActor): Promise<void> {
	const release = await getRelease(r.releaseId);
	const target = await resolveTarget(r.target, release);
	const earlier = await db()
		.select({ nodeId: rolloutNodes.nodeId, stage: rolloutNodes.stage })
		.from(rolloutNodes)
		.where(eq(rolloutNodes.rolloutId, r.id));
	const assigned = new Map(earlier.filter((e) => e.stage !== k).map((e) => [e.nodeId, e.stage]));
	const members = earlier.some((e) => e.stage === k)
		? earlier.filter((e) => e.stage === k).map((e) => e.nodeId)
		: membersOfStage(
				r.id,
				r.stages.map((s) => s.percent),
				k,
				target.nodes.map((n) => n.id),
				assigned
			);
	const nameOf = new Map(target.nodes.map((n) => [n.id, n.name]));
	const now = new Date().toISOString();
	if (!members.length) {
		await transition(r, ['running', 'waiting_approval'], {
			state: 'running',
			currentStage: k,
			stages: withStage(r, k, { state: 'done', startedAt: now, endedAt: now })
		});
		return;
	}
	await db()
		.insert(rolloutNodes)
		.values(members.map((id) => ({ rolloutId: r.id, nodeId: id, nodeName: nameOf.get(id) ?? id, stage: k })))
		.onConflictDoNothing();
	// Marked running first: a crash between the two writes leaves a stage without a run, which the next turn starts.
	// Of two consoles starting the stage at once, only the first one's mark is written (transition): the other stops.
	const marked = await transition(r, ['running', 'waiting_approval'], {
		state: 'running',
		reason: null,
		currentStage: k,
		stages: withStage(r, k, { state: 'running', startedAt: now })
	});
	if (!marked) return;
	await startStageRun(marked, k, actor);
}

async function startStageRun(r: Rollout, k: number, actor: Actor): Promise<void> {
	const release = await getRelease(r.releaseId);
	const target = await resolveTarget(r.target, release);
	const members = await db()
		.select({ nodeId: rolloutNodes.nodeId })
		.from(rolloutNodes)
		.where(and(eq(rolloutNodes.rolloutId, r.id), eq(rolloutNodes.stage, k)));
	const ids = members.map((m) => m.nodeId);
	const special = await releaseKindOf(release);
	const stageRun = special
		? await special.stageRun(release, r, k)
		: {
				kind: 'rollout-stage',
				params: {
					targets: Object.fromEntries(target.roles.map((role) => [role, release.sha])),
					rollout_id: r.id,
					bake_seconds: r.stages[k]!.bakeSeconds,
					respect_windows: r.respectWindows
				}
			};
	const run = await createClaimedRun(
		actor,
		{
			kind: stageRun.kind,
			title: `Rollout #${r.number}: ${release.version}, ${stageLabel(r, k)}`,
			nodeIds: r.respectWindows ? await orderByWindow(ids) : ids,
			params: stageRun.params,
			scope: { rollout_id: r.id, stage: k },
			options: { concurrency: r.concurrency }
		},
		// The stage takes the run's id in the run's own transaction, if it is still running without one: of two
		// consoles starting it at once, the second waits for the first one's commit, finds the id and creates nothing.
		async (tx, runId) => {
			const claimed = await tx
				.update(rollouts)
				.set({
					stages: sql`jsonb_set(${rollouts.stages}, array[${String(k)}::text, 'runId'], to_jsonb(${runId}::text))`
				})
				.where(
					and(
						eq(rollouts.id, r.id),
						eq(rollouts.state, 'running'),
						eq(rollouts.currentStage, k),
						sql`${rollouts.stages} -> ${k}::int ->> 'state' = 'running'`,
						sql`(${rollouts.stages} -> ${k}::int ->> 'runId') is null`
					)
				)
				.returning({ id: rollouts.id });
			return claimed.length > 0;
		}
	);
	if (!run) return;
	await recordEvent({
		type: 'rollout.stage',
		runId: run.id,
		data: { rollout_id: r.id, number: r.number, stage: k, nodes: members.length, run_id: run.id }
	});
}

/** The stage's failures against the threshold: the reason to pause, or null. */
export function thresholdReason(r: Rollout, k: number, counts: Counts): string | null {
	const { failed, finished } = failuresOf(counts);
	const acknowledged = r.stages[k]!.acknowledgedFailures ?? 0;
	if (failed <= acknowledged) return null;
	const minimum = Math.min(r.minFinishedNodes, counts.total);
	if (finished < minimum) return null;
	const rate = (failed * 100) / finished;
	if (rate <= r.failureThresholdPercent) return null;
	return `${stageLabel(r, k)}: ${failed} of ${finished} finished nodes failed (${Math.round(rate)}% > the ${r.failureThresholdPercent}% threshold)`;
}

async function judgeStage(r: Rollout, k: number): Promise<void> {
	const stage = r.stages[k]!;
	if (!stage.runId) {
		await startStageRun(r, k, systemActor);
		return;
	}
	const run = await getRun(stage.runId);
	const reason = thresholdReason(r, k, await stageCounts(r, k, run.counts));
	if (reason) {
		const paused = await transition(r, ['running'], { state: 'paused', reason });
		if (paused) {
			await recordEvent({
				type: 'rollout.paused',
				runId: run.id,
				data: { rollout_id: r.id, number: r.number, stage: k, reason }
			});
			if (['queued', 'running'].includes(run.state)) {
				await pauseRun(systemActor, run.id).catch(() => undefined);
			}
		}
		return;
	}
	if (run.state === 'cancelled') {
		await transition(r, ['running'], {
			state: 'paused',
			reason: `${stageLabel(r, k)}: its run #${run.number} was cancelled`
		});
		return;
	}
	if (!ENDED_RUN.includes(run.state)) return;
	await finishStage(r, k);
}

async function finishStage(r: Rollout, k: number): Promise<void> {
	const stages = withStage(r, k, { state: 'done', endedAt: new Date().toISOString() });
	const last = k === r.stages.length - 1;
	if (last) {
		const failed = await db()
			.select({ nodeId: rolloutNodes.nodeId })
			.from(rolloutNodes)
			.where(and(eq(rolloutNodes.rolloutId, r.id), inArray(rolloutNodes.state, FAILED_NODES)));
		await transition(r, ['running'], {
			state: 'completed',
			stages,
			endedAt: new Date(),
			reason: failed.length ? `completed; ${failed.length} node(s) failed and stayed on what they ran` : null
		});
		return;
	}
	if (r.requireApproval) {
		await transition(r, ['running'], {
			state: 'waiting_approval',
			stages,
			reason: `${stageLabel(r, k + 1)} waits for approval (advance)`
		});
		return;
	}
	const done = await transition(r, ['running'], { stages });
	if (!done) return;
	const at = await nextStageAt(done, k);
	if (!at) return startStage(done, k + 1);
	await transition(done, ['running'], {
		reason: `${stageLabel(done, k + 1)} starts at ${at.toISOString()}, after ${stageLabel(done, k)}'s delay (advance starts it now)`
	});
}

async function checkRollback(r: Rollout): Promise<void> {
	if (!r.rollbackRunId) return;
	const run = await getRun(r.rollbackRunId);
	if (!ENDED_RUN.includes(run.state)) return;
	const { failed } = failuresOf(run.counts);
	await transition(r, ['rolling_back'], {
		state: failed ? 'failed' : 'rolled_back',
		endedAt: new Date(),
		reason: failed
			? `fleet rollback: ${failed} of ${run.counts.total} node(s) could not go back (run #${run.number})`
			: `fleet rollback: ${run.counts.succeeded} node(s) back on what they ran before`
	});
}

const deciding = new Map<string, Promise<void>>();

/**
 * One decision for one rollout, after any this console is taking for it: a page's start (or a control) and the
 * periodic turn would otherwise both see a stage without its run and start one each.
 */
export function driveRollout(id: string): Promise<void> {
	const next = (deciding.get(id) ?? Promise.resolve()).then(() => decide(id));
	const settled = next.catch(() => undefined);
	deciding.set(id, settled);
	void settled.then(() => {
		if (deciding.get(id) === settled) deciding.delete(id);
	});
	return next;
}

async function decide(id: string): Promise<void> {
	const r = await getRollout(id);
	if (r.state === 'scheduled') {
		if (r.startAt && r.startAt > new Date()) return;
		const started = await transition(r, ['scheduled'], { state: 'running' });
		if (started) await startStage(started, 0);
		return;
	}
	if (r.state === 'rolling_back') return checkRollback(r);
	if (r.state !== 'running') return;
	const k = r.currentStage;
	if (k < 0) return startStage(r, 0);
	if (r.stages[k]!.state === 'done') {
		if (k === r.stages.length - 1 || (await nextStageAt(r, k))) return;
		return startStage(r, k + 1);
	}
	return judgeStage(r, k);
}

let turning: Promise<{ rollouts: number }> | null = null;

/** A turn of the driver over every active rollout (the periodic job; tests call it too). */
export function driveRollouts(): Promise<{ rollouts: number }> {
	turning ??= (async () => {
		try {
			const active = await db()
				.select({ id: rollouts.id })
				.from(rollouts)
				.where(inArray(rollouts.state, activeRolloutStates));
			for (const a of active) {
				// Several decisions a turn when they follow one another (a stage ends, the next starts).
				for (let i = 0; i < 3; i++) {
					const before = await getRollout(a.id);
					await driveRollout(a.id).catch((err: unknown) =>
						log.warn({ err: loggableError(err), rollout: a.id }, 'rollout turn failed')
					);
					const after = await getRollout(a.id);
					if (JSON.stringify(before) === JSON.stringify(after)) break;
				}
			}
			return { rollouts: active.length };
		} finally {
			turning = null;
		}
	})();
	return turning;
}

/* Controls (docs/releases.md, "Controls"): each checks the state it may act in, answers 409 naming it otherwise. */

function refuse(r: Rollout, action: string, allowed: string): never {
	throw conflict(`Rollout #${r.number} is ${r.state}: ${action} is possible ${allowed}`, { state: r.state });
}

/** Pauses the rollout; `why` is the reason shown when something other than an operator paused it. */
export async function pauseRollout(actor: Actor, id: string, why?: string): Promise<Rollout> {
	const r = await getRollout(id);
	if (!['scheduled', 'running', 'waiting_approval'].includes(r.state)) {
		refuse(r, 'pause', 'while it is scheduled, running or waiting for approval');
	}
	const reason = why ?? `Paused by ${actor.name}`;
	const row = await transition(r, [r.state], { state: 'paused', reason });
	if (!row) return refuse(await getRollout(id), 'pause', 'while it is running');
	const runId = r.stages[r.currentStage]?.runId;
	if (runId && r.stages[r.currentStage]!.state === 'running') {
		await pauseRun(actor, runId).catch(() => undefined);
	}
	await recordAudit(actor, {
		action: 'rollout.pause',
		targetType: 'rollout',
		targetId: id,
		details: why ? { reason: why } : undefined
	});
	return row;
}

/** Resumes a paused rollout; the failures its current stage already had are acknowledged and do not trip it again. */
export async function resumeRollout(actor: Actor, id: string): Promise<Rollout> {
	const r = await getRollout(id);
	if (r.state !== 'paused') refuse(r, 'resume', 'only while it is paused');
	const k = r.currentStage;
	let stages = r.stages;
	const runId = k >= 0 ? r.stages[k]!.runId : undefined;
	if (runId) {
		const run = await getRun(runId);
		stages = withStage(r, k, { acknowledgedFailures: failuresOf(await stageCounts(r, k, run.counts)).failed });
		if (run.state === 'paused') await resumeRun(actor, runId);
	}
	const notYet = k < 0 && r.startAt !== null && r.startAt > new Date();
	const row = await transition(r, ['paused'], {
		// Paused before its time, it is scheduled again; paused between stages, it waits for approval again.
		state: notYet
			? 'scheduled'
			: k >= 0 && r.stages[k]!.state === 'done' && r.requireApproval
				? 'waiting_approval'
				: 'running',
		reason: null,
		stages
	});
	if (!row) return refuse(await getRollout(id), 'resume', 'only while it is paused');
	await recordAudit(actor, { action: 'rollout.resume', targetType: 'rollout', targetId: id });
	await driveRollout(id);
	return getRollout(id);
}

/**
 * Goes on to the next stage now: approves it when the rollout waits for approval, starts a scheduled rollout
 * before its time, or — paused after its stage's run ended — acknowledges that stage's failures and moves on.
 */
export async function advanceRollout(actor: Actor, id: string): Promise<Rollout> {
	const r = await getRollout(id);
	const k = r.currentStage;
	if (r.state === 'scheduled') {
		const row = await transition(r, ['scheduled'], { state: 'running', startAt: new Date() });
		if (row) await startStage(row, 0, actor);
	} else if (r.state === 'running' && k >= 0 && r.stages[k]!.state === 'done' && (await nextStageAt(r, k))) {
		// Waiting out a stage's delay: the operator starts the next stage now.
		const row = await transition(r, ['running'], { reason: null });
		if (row) await startStage(row, k + 1, actor);
	} else if (r.state === 'waiting_approval' || r.state === 'paused') {
		const stage = r.stages[k];
		if (stage && stage.state === 'running') {
			const run = stage.runId ? await getRun(stage.runId) : null;
			if (!run || !ENDED_RUN.includes(run.state)) {
				throw conflict(`Rollout #${r.number}: ${stageLabel(r, k)} still has nodes to update; resume it, or cancel it`, {
					state: `${stageLabel(r, k)} in progress`
				});
			}
		}
		if (k >= r.stages.length - 1 && stage?.state === 'done') refuse(r, 'advance', 'while a stage is left');
		if (k === r.stages.length - 1) {
			const row = await transition(r, [r.state], { state: 'running', reason: null });
			if (row) await finishStage(row, k);
		} else {
			const stages = k >= 0 ? withStage(r, k, { state: 'done', endedAt: new Date().toISOString() }) : r.stages;
			const row = await transition(r, [r.state], { state: 'running', reason: null, stages });
			if (row) await startStage(row, k + 1, actor);
		}
	} else {
		refuse(r, 'advance', 'while it is scheduled, waiting for approval, or paused after a stage');
	}
	await recordAudit(actor, {
		action: 'rollout.advance',
		targetType: 'rollout',
		targetId: id,
		details: { from_stage: k }
	});
	return getRollout(id);
}

/** Stops the rollout: the current stage's queued nodes never start, running ones are undone; others keep the release. */
export async function cancelRollout(actor: Actor, id: string): Promise<Rollout> {
	const r = await getRollout(id);
	if (!['scheduled', 'running', 'waiting_approval', 'paused'].includes(r.state)) {
		refuse(r, 'cancel', 'until it ends');
	}
	const row = await transition(r, [r.state], {
		state: 'cancelled',
		reason: `Cancelled by ${actor.name}`,
		endedAt: new Date()
	});
	if (!row) return refuse(await getRollout(id), 'cancel', 'until it ends');
	await stopStageRun(actor, r);
	await recordAudit(actor, { action: 'rollout.cancel', targetType: 'rollout', targetId: id });
	return row;
}

async function stopStageRun(actor: Actor, r: Rollout): Promise<void> {
	const runId = r.stages[r.currentStage]?.runId;
	if (!runId) return;
	const run = await getRun(runId);
	if (!ENDED_RUN.includes(run.state)) await cancelRun(actor, runId).catch(() => undefined);
}

/**
 * Fleet rollback: every node this rollout moved goes back to what it ran before, as one run, latest stage first.
 * Rollback protection applies: when what a node ran before is a release below the minimum version, 400.
 */
export async function rollbackRollout(actor: Actor, id: string): Promise<Rollout> {
	const r = await getRollout(id);
	if (['rolling_back', 'rolled_back'].includes(r.state)) refuse(r, 'rollback', 'once');
	const kind = await releaseKindOf(await getRelease(r.releaseId));
	const changed = await db()
		.select()
		.from(rolloutNodes)
		.where(and(eq(rolloutNodes.rolloutId, id), eq(rolloutNodes.state, 'succeeded')));
	if (kind) return rollbackOtherKind(actor, r, changed, kind.revertRun);
	const targets: Record<string, Record<string, string>> = {};
	for (const n of changed) {
		const back = Object.entries(n.previous ?? {}).filter((e): e is [string, string] => !!e[1]);
		if (back.length) targets[n.nodeId] = Object.fromEntries(back);
	}
	const shas = [...new Set(Object.values(targets).flatMap((t) => Object.values(t)))];
	for (const rel of (await releasesForCommits(shas)).values()) {
		try {
			assertAllowedVersion(rel.version, 'rollback', 'Rolling back to release');
		} catch (err) {
			if (err instanceof ServiceError) {
				await recordAudit(actor, {
					action: 'rollout.rollback',
					targetType: 'rollout',
					targetId: id,
					result: 'denied',
					details: { reason: err.message }
				});
			}
			throw err;
		}
	}
	await stopStageRun(actor, r);
	return startRollbackRun(actor, r, changed, Object.keys(targets), {
		kind: 'rollout-revert',
		params: { targets: {}, node_targets: targets, rollout_id: id }
	});
}

/** A release of another kind (an appliance image): its domain says what going back is on its nodes. */
async function rollbackOtherKind(
	actor: Actor,
	r: Rollout,
	changed: (typeof rolloutNodes.$inferSelect)[],
	revertRun: ReleaseKind['revertRun']
): Promise<Rollout> {
	await stopStageRun(actor, r);
	const nodeIds = changed.map((n) => n.nodeId);
	return startRollbackRun(actor, r, changed, nodeIds, await revertRun(r, nodeIds));
}

async function startRollbackRun(
	actor: Actor,
	r: Rollout,
	changed: (typeof rolloutNodes.$inferSelect)[],
	nodeIds: string[],
	revert: { kind: string; params: Record<string, unknown> }
): Promise<Rollout> {
	const id = r.id;
	const stageOf = new Map(changed.map((n) => [n.nodeId, n.stage]));
	if (!nodeIds.length) {
		const row = await transition(r, [r.state], {
			state: 'rolled_back',
			endedAt: new Date(),
			reason: 'fleet rollback: no node had been moved'
		});
		await recordAudit(actor, { action: 'rollout.rollback', targetType: 'rollout', targetId: id });
		return row ?? getRollout(id);
	}
	const release = await getRelease(r.releaseId);
	const run = await createRun(actor, {
		kind: revert.kind,
		title: `Rollback of rollout #${r.number} (${release.version}): ${nodeIds.length} node(s)`,
		nodeIds,
		params: revert.params,
		scope: { rollout_id: id },
		options: { concurrency: r.concurrency },
		// Reverse stage order: the last stage's nodes go back first.
		phaseOf: (nodeId) => r.stages.length - 1 - (stageOf.get(nodeId) ?? 0)
	});
	const row = await transition(r, [r.state], {
		state: 'rolling_back',
		rollbackRunId: run.id,
		reason: `Fleet rollback by ${actor.name}`
	});
	await recordAudit(actor, {
		action: 'rollout.rollback',
		targetType: 'rollout',
		targetId: id,
		details: { run_id: run.id, nodes: nodeIds.length }
	});
	return row ?? getRollout(id);
}
