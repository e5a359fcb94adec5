import { and, eq, inArray, or } from 'drizzle-orm';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import {
	keyRotationNodes,
	keyRotations,
	nodes,
	type KeyRotation,
	type KeyRotationNode,
	type KeyRotationPhase,
	type KeyRotationPhaseRecord
} from '$lib/server/db/schema';
import { createRun, getRun, recordEvent } from '$lib/server/engine';
import { conflict, notFound } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { phaseTitles, type NodePhase } from './phases';

/*
 * The key rotation's driver (docs/ssh-key-rotation.md, "How a rotation moves"). All it needs is in the database:
 * the rotation's phase and the run executing it, and each node's state. A turn ends a phase whose run has ended
 * on every node and starts the next, or aborts; so a console that restarts carries on at its next turn. Turns
 * come from the engine's periodic job, and from the API right after it starts a rotation.
 */

const ENDED = ['succeeded', 'failed', 'cancelled'];
/** Where a failure stops the whole rotation: nothing has been removed from any host before K5. */
const ABORT_POINTS: KeyRotationPhase[] = ['survey', 'K1', 'K2', 'K3', 'K4'];

export function nextPhase(r: Pick<KeyRotation, 'removeSafetyNet'>, phase: KeyRotationPhase): KeyRotationPhase {
	const order: KeyRotationPhase[] = [
		'survey',
		'K1',
		'K2',
		'K3',
		'K4',
		'K5',
		...(r.removeSafetyNet ? (['K6'] as const) : []),
		'done'
	];
	return order[order.indexOf(phase) + 1] ?? 'done';
}

async function rotationOf(id: string): Promise<KeyRotation> {
	const [r] = await db().select().from(keyRotations).where(eq(keyRotations.id, id));
	if (!r) throw new Error(`key rotation ${id} is gone`);
	return r;
}

/** Writes the rotation's change if it is still at `from` (another console may have moved it meanwhile). */
async function move(r: KeyRotation, set: Partial<KeyRotation>): Promise<KeyRotation | null> {
	const [row] = await db()
		.update(keyRotations)
		.set({ ...set, updatedAt: new Date() })
		.where(and(eq(keyRotations.id, r.id), eq(keyRotations.phase, r.phase), eq(keyRotations.state, r.state)))
		.returning();
	if (row) {
		await recordEvent({
			type: 'key_rotation.state',
			data: { rotation_id: r.id, number: r.number, state: row.state, phase: row.phase, reason: row.abortReason }
		});
	}
	return row ?? null;
}

async function startPhase(r: KeyRotation, phase: NodePhase): Promise<void> {
	const active = await db()
		.select({ nodeId: keyRotationNodes.nodeId })
		.from(keyRotationNodes)
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'active')));
	if (!active.length) return finish(r);
	const run = await createRun(systemActor, {
		kind: 'ssh-key-phase',
		title: `Key rotation #${r.number}: ${phaseTitles[phase]}`,
		nodeIds: active.map((a) => a.nodeId),
		params: { rotation_id: r.id, phase },
		options: { concurrency: 20 }
	});
	const record: KeyRotationPhaseRecord = {
		phase,
		runId: run.id,
		state: 'running',
		nodes: active.length,
		problems: [],
		startedAt: new Date().toISOString(),
		endedAt: null
	};
	const moved = await move(r, { phase, phaseRunId: run.id, phases: [...r.phases, record] });
	if (!moved) log.warn({ rotation: r.id, phase }, 'key rotation moved on elsewhere while a phase started');
}

/** The main phases are over: nodes that went through are done; the rotation stays open for the deferred. */
async function finish(r: KeyRotation): Promise<void> {
	await db()
		.update(keyRotationNodes)
		.set({ state: 'done' })
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'active')));
	const deferred = await db()
		.select({ nodeId: keyRotationNodes.nodeId })
		.from(keyRotationNodes)
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'deferred')));
	await move(r, {
		phase: 'done',
		phaseRunId: null,
		state: deferred.length ? 'open' : 'completed',
		endedAt: deferred.length ? null : new Date()
	});
}

/** Judges a phase whose run has ended: on to the next, or abort at an abort point. */
async function judgePhase(r: KeyRotation): Promise<void> {
	const run = await getRun(r.phaseRunId!);
	if (!ENDED.includes(run.state)) return;
	const phase = r.phase as NodePhase;
	const rows = await db().select().from(keyRotationNodes).where(eq(keyRotationNodes.rotationId, r.id));
	const inRun = new Set(run.tasks.map((t) => t.nodeId));
	const taskOf = new Map(run.tasks.map((t) => [t.nodeId, t]));
	const problems: KeyRotationPhaseRecord['problems'] = [];
	const failed: string[] = [];
	for (const n of rows.filter((row) => inRun.has(row.nodeId))) {
		const task = taskOf.get(n.nodeId)!;
		if (task.state === 'succeeded') continue;
		if (n.state === 'deferred') {
			problems.push({ node: n.nodeName, reason: n.error ?? 'unreachable', unreachable: true });
			continue;
		}
		problems.push({ node: n.nodeName, reason: n.error ?? task.error ?? `ended ${task.state}`, unreachable: false });
		failed.push(n.nodeId);
	}
	const abort = run.state === 'cancelled' || (failed.length > 0 && ABORT_POINTS.includes(phase));
	const phases = r.phases.map((p) =>
		p.runId === run.id
			? {
					...p,
					state: failed.length || run.state === 'cancelled' ? ('failed' as const) : ('passed' as const),
					problems,
					endedAt: new Date().toISOString()
				}
			: p
	);
	await recordAudit(systemActor, {
		action: 'ssh_keys.phase',
		targetType: 'key_rotation',
		targetId: r.id,
		details: {
			number: r.number,
			phase,
			run_id: run.id,
			outcome: abort ? 'aborted' : failed.length ? 'failed on some nodes' : 'passed',
			nodes: run.tasks.length,
			problems
		}
	});
	if (abort) {
		const why =
			run.state === 'cancelled'
				? 'the phase was cancelled'
				: problems
						.filter((p) => !p.unreachable)
						.map((p) => `${p.node}: ${p.reason}`)
						.join('; ');
		// The nodes to clean are marked before the abort is written, so that a console dying in between leaves a
		// phase that is judged again, and one dying after leaves a rotation whose cleanup the next turn carries on.
		const cleaning = await markForCleanup(r, rows);
		const aborted = await move(r, {
			state: 'aborted',
			phase: cleaning ? 'cleanup' : r.phase,
			phases,
			phaseRunId: null,
			abortedPhase: phase,
			abortReason: `${phaseTitles[phase]} failed on ${failed.length || run.tasks.length} node(s): ${why}`,
			endedAt: new Date()
		});
		if (aborted?.phase === 'cleanup') await cleanUp(aborted);
		return;
	}
	// After K5 a node that failed keeps what it had; it is not taken further (K6 needs K5 done).
	if (failed.length) {
		await db()
			.update(keyRotationNodes)
			.set({ state: 'failed' })
			.where(and(eq(keyRotationNodes.rotationId, r.id), inArray(keyRotationNodes.nodeId, failed)));
	}
	const moved = await move(r, { phases, phaseRunId: null });
	if (!moved) return;
	const next = nextPhase(r, phase);
	if (next === 'done') return finish(moved);
	return startPhase(moved, next as NodePhase);
}

/** An open rotation: nodes that were away and have been seen since are finished, one catch-up run at a time. */
async function catchUp(r: KeyRotation): Promise<void> {
	if (r.catchUpRunId) {
		const run = await getRun(r.catchUpRunId);
		if (!ENDED.includes(run.state)) return;
		await recordAudit(systemActor, {
			action: 'ssh_keys.catch_up',
			targetType: 'key_rotation',
			targetId: r.id,
			details: {
				number: r.number,
				run_id: run.id,
				nodes: run.tasks.map((t) => ({ node: t.nodeName, state: t.state, error: t.error }))
			}
		});
		r = (await move(r, { catchUpRunId: null })) ?? r;
	}
	const deferred = await db()
		.select({ nodeId: keyRotationNodes.nodeId, deferredAt: keyRotationNodes.deferredAt, lastSeenAt: nodes.lastSeenAt })
		.from(keyRotationNodes)
		.innerJoin(nodes, eq(nodes.id, keyRotationNodes.nodeId))
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'deferred')));
	if (!deferred.length) {
		await move(r, { state: 'completed', endedAt: new Date() });
		return;
	}
	const back = deferred.filter((d) => d.lastSeenAt && (!d.deferredAt || d.lastSeenAt > d.deferredAt));
	if (!back.length || r.catchUpRunId) return;
	const run = await createRun(systemActor, {
		kind: 'ssh-key-catchup',
		title: `Key rotation #${r.number}: catch up ${back.length} node(s) that were away`,
		nodeIds: back.map((b) => b.nodeId),
		params: { rotation_id: r.id },
		options: { concurrency: 20 }
	});
	await move(r, { catchUpRunId: run.id });
}

/**
 * On an abort: the nodes where K1 ran (every node that passed the dry run, whether set aside later or not) may hold
 * this rotation's safety-net line, and where K3 ran its new key. They are marked `cleanup`, for the cleanup phase
 * that takes those lines off (phases.ts, cleanUpAfterAbort). Resolves with whether there is any.
 */
async function markForCleanup(r: KeyRotation, rows: KeyRotationNode[]): Promise<boolean> {
	// A cancelled K5 or K6 also aborts, but nodes have moved to the new key by then: nothing is taken back.
	if (!ABORT_POINTS.includes(r.phase) || !r.phases.some((p) => p.phase === 'K1')) return false;
	// A node set aside in K1 itself may have had its line written just before the connection dropped.
	const touched = rows.filter((n) => n.reached !== null);
	if (!touched.length) return false;
	await db()
		.update(keyRotationNodes)
		.set({ state: 'cleanup', deferredAt: null })
		.where(
			and(
				eq(keyRotationNodes.rotationId, r.id),
				inArray(
					keyRotationNodes.nodeId,
					touched.map((n) => n.nodeId)
				)
			)
		);
	return true;
}

/**
 * An aborted rotation's cleanup, one run at a time, like the catch-up of an open one: the first run takes every
 * node marked `cleanup`; a node that was away is taken again once the health sweep has seen it since. When no node
 * is left to clean, the rotation's phase is `done`.
 */
async function cleanUp(r: KeyRotation): Promise<void> {
	if (r.catchUpRunId) {
		const run = await getRun(r.catchUpRunId);
		if (!ENDED.includes(run.state)) return;
		const rows = await db().select().from(keyRotationNodes).where(eq(keyRotationNodes.rotationId, r.id));
		const errorOf = new Map(rows.map((n) => [n.nodeId, n]));
		const problems = run.tasks
			.filter((t) => t.state !== 'succeeded')
			.map((t) => ({
				node: t.nodeName,
				reason: errorOf.get(t.nodeId)?.error ?? t.error ?? `ended ${t.state}`,
				unreachable: errorOf.get(t.nodeId)?.state === 'cleanup'
			}));
		const phases = r.phases.map((p) =>
			p.runId === run.id
				? {
						...p,
						state: problems.length ? ('failed' as const) : ('passed' as const),
						problems,
						endedAt: new Date().toISOString()
					}
				: p
		);
		await recordAudit(systemActor, {
			action: 'ssh_keys.cleanup',
			targetType: 'key_rotation',
			targetId: r.id,
			details: {
				number: r.number,
				phase: 'cleanup',
				run_id: run.id,
				nodes: run.tasks.map((t) => ({ node: t.nodeName, state: t.state, error: errorOf.get(t.nodeId)?.error ?? null }))
			}
		});
		r = (await move(r, { catchUpRunId: null, phases })) ?? r;
	}
	const pending = await db()
		.select({ nodeId: keyRotationNodes.nodeId, deferredAt: keyRotationNodes.deferredAt, lastSeenAt: nodes.lastSeenAt })
		.from(keyRotationNodes)
		.innerJoin(nodes, eq(nodes.id, keyRotationNodes.nodeId))
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'cleanup')));
	if (!pending.length) {
		await move(r, { phase: 'done' });
		return;
	}
	const back = pending.filter((d) => !d.deferredAt || (d.lastSeenAt && d.lastSeenAt > d.deferredAt));
	if (!back.length || r.catchUpRunId) return;
	const run = await createRun(systemActor, {
		kind: 'ssh-key-cleanup',
		title: `Key rotation #${r.number}: clean up after the abort on ${back.length} node(s)`,
		nodeIds: back.map((b) => b.nodeId),
		params: { rotation_id: r.id },
		options: { concurrency: 20 }
	});
	const record: KeyRotationPhaseRecord = {
		phase: 'cleanup',
		runId: run.id,
		state: 'running',
		nodes: back.length,
		problems: [],
		startedAt: new Date().toISOString(),
		endedAt: null
	};
	await move(r, { catchUpRunId: run.id, phases: [...r.phases, record] });
}

/**
 * An admin's retry of the nodes that failed K5 or K6 (or a catch-up) once the rotation's main phases are over:
 * they go through a catch-up run — every phase again, each idempotent and proven by login — and the rotation is
 * open until it ends. They are set aside as `deferred` meanwhile, so no other rotation takes them and, should one
 * be away now, it is finished when it is back like any other. `deferredAt` now keeps the driver's own catch-up
 * from taking them a second time while this run has them.
 */
export async function retryFailedNodes(actor: Actor, id: string): Promise<{ runId: string; nodes: string[] }> {
	const [r] = await db().select().from(keyRotations).where(eq(keyRotations.id, id));
	if (!r) throw notFound('Key rotation');
	if (r.state === 'running' || r.state === 'aborted') {
		throw conflict(
			r.state === 'running'
				? `Key rotation #${r.number} is still running: its failed nodes can be tried again once it has ended`
				: `Key rotation #${r.number} was aborted: no key was removed, start a new rotation instead`,
			{ rotation_id: `rotation #${r.number} is ${r.state}` }
		);
	}
	if (r.catchUpRunId) {
		throw conflict(`Key rotation #${r.number} is finishing nodes already`, {
			rotation_id: `rotation #${r.number} has a catch-up running`
		});
	}
	// Taking the failed rows is the claim: a second retry at the same moment finds none left.
	const taken = await db()
		.update(keyRotationNodes)
		.set({ state: 'deferred', deferredAt: new Date() })
		.where(and(eq(keyRotationNodes.rotationId, r.id), eq(keyRotationNodes.state, 'failed')))
		.returning({ nodeId: keyRotationNodes.nodeId, nodeName: keyRotationNodes.nodeName });
	if (!taken.length) {
		throw conflict(`Key rotation #${r.number} has no failed node to try again`, {
			rotation_id: `rotation #${r.number} has no failed node`
		});
	}
	const run = await createRun(actor, {
		kind: 'ssh-key-catchup',
		title: `Key rotation #${r.number}: try ${taken.length} failed node(s) again`,
		nodeIds: taken.map((t) => t.nodeId),
		params: { rotation_id: r.id },
		options: { concurrency: 20 }
	});
	await move(r, { state: 'open', catchUpRunId: run.id, endedAt: null });
	const names = taken.map((t) => t.nodeName).sort();
	await recordAudit(actor, {
		action: 'ssh_keys.retry',
		targetType: 'key_rotation',
		targetId: r.id,
		details: { number: r.number, run_id: run.id, nodes: names }
	});
	return { runId: run.id, nodes: names };
}

/** One decision for one rotation. */
export async function driveKeyRotation(id: string): Promise<void> {
	const r = await rotationOf(id);
	if (r.state === 'open') return catchUp(r);
	if (r.state === 'aborted' && r.phase === 'cleanup') return cleanUp(r);
	if (r.state !== 'running') return;
	if (!r.phaseRunId) return startPhase(r, r.phase === 'done' ? 'survey' : (r.phase as NodePhase));
	return judgePhase(r);
}

let turning: Promise<{ rotations: number }> | null = null;

/** A turn over every rotation that is running, open, or cleaning up after an abort (the periodic job; tests call it too). */
export function driveKeyRotations(): Promise<{ rotations: number }> {
	turning ??= (async () => {
		try {
			const live = await db()
				.select({ id: keyRotations.id })
				.from(keyRotations)
				.where(
					or(
						inArray(keyRotations.state, ['running', 'open']),
						and(eq(keyRotations.state, 'aborted'), eq(keyRotations.phase, 'cleanup'))
					)
				);
			for (const { id } of live) {
				// Several decisions a turn when they follow one another (a phase ends, the next starts).
				for (let i = 0; i < 3; i++) {
					const before = JSON.stringify(await rotationOf(id));
					await driveKeyRotation(id).catch((err: unknown) =>
						log.warn({ err: loggableError(err), rotation: id }, 'key rotation turn failed')
					);
					if (JSON.stringify(await rotationOf(id)) === before) break;
				}
			}
			return { rotations: live.length };
		} finally {
			turning = null;
		}
	})();
	return turning;
}
