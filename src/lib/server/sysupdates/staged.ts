import { and, desc, eq, inArray, isNotNull } from 'drizzle-orm';
import type { NodeUpdateRequest } from '$lib/schemas/system-updates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import {
	nodes,
	sysNodeScans,
	sysStagedUpdates,
	type Node,
	type SysStage,
	type SysStagedUpdate
} from '$lib/server/db/schema';
import { getRun } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { startUpdate } from './runs';
import { stagedPhases } from './stages';
import { planFromLastScan } from './views';

/*
 * Staged patching with a soak (docs/system-updates.md, "Staged patching"): each stage is its own run, and the
 * next one starts only when the earlier stage has gone `soak` hours without a failure. Nothing waits in memory:
 * the stages, the one in progress and when the next may start are rows, and a periodic check of the console
 * (`driveStagedUpdates`, every minute) moves them on, so a console restarted in the middle carries on.
 * Every stage is pinned to the plan the operator approved when starting it: a node offering anything else by
 * the time its stage runs (a newer candidate published meanwhile, a package more or less) refuses its update.
 */

type Planned = { name: string; candidate: string };

export interface StagedStart {
	stagedId: string;
	firstRunId: string;
}

/**
 * Starts a staged update of `list`: the nodes of the first label's stage now, the others later, one stage per
 * soak. A single stage (no node carries the labels) is still recorded, so the page shows how it went.
 * `opts.approved` is, per node id, the plan the operator reviewed; a node without one is pinned to the plan its
 * last scan gives (what the review would have shown). A reboot-only update installs nothing, so pins nothing.
 */
export async function startStagedUpdate(
	actor: Actor,
	list: Node[],
	request: NodeUpdateRequest,
	opts: { order: string[]; soakHours: number; rebootOnly?: boolean; approved?: Record<string, Planned[]> }
): Promise<StagedStart> {
	if (!list.length) throw new ServiceError('validation_failed', 'No node to update', { nodes: 'empty' });
	const plan = stagedPhases(list, opts.order, 0, new Map());
	const approved = new Map<string, Planned[]>();
	if (!opts.rebootOnly) {
		for (const n of list) approved.set(n.id, opts.approved?.[n.id] ?? (await planFromLastScan(n, request)).candidates);
	}
	const stages: SysStage[] = plan.stages.map((s) => ({
		label: s.label,
		controlPlane: s.controlPlane,
		nodeIds: s.nodeIds,
		runId: null,
		finishedAt: null,
		...(opts.rebootOnly ? {} : { approved: Object.fromEntries(s.nodeIds.map((id) => [id, approved.get(id)!])) })
	}));
	const byId = new Map(list.map((n) => [n.id, n]));
	const stored = {
		force_full: request.force_full,
		...(request.reboot ? { reboot: request.reboot } : {}),
		rebootOnly: opts.rebootOnly ?? false
	};
	// The first run first: when it cannot start (a node busy, a key not pinned), nothing is recorded.
	const run = await startUpdate(
		actor,
		stages[0]!.nodeIds.map((id) => byId.get(id)!),
		request,
		{ rebootOnly: opts.rebootOnly, approved: stages[0]!.approved }
	);
	stages[0]!.runId = run.id;
	const [row] = await db()
		.insert(sysStagedUpdates)
		.values({ stages, soakSeconds: Math.round(opts.soakHours * 3600), request: stored, actor })
		.returning();
	await recordAudit(actor, {
		action: 'system_updates.staged',
		targetType: 'staged_update',
		targetId: row!.id,
		details: { order: opts.order, soak_hours: opts.soakHours, stages: stages.length, first_run: run.id }
	});
	return { stagedId: row!.id, firstRunId: run.id };
}

const stageName = (s: SysStage) => (s.controlPlane ? 'the control plane' : s.label ? `stage ${s.label}` : 'the rest');

/** Moves every staged update one decision on; what it did, for tests and the log. */
export async function driveStagedUpdates(now: Date = new Date()): Promise<{ started: string[]; stopped: string[] }> {
	const active = await db()
		.select()
		.from(sysStagedUpdates)
		.where(inArray(sysStagedUpdates.state, ['running', 'soaking']));
	const started: string[] = [];
	const stopped: string[] = [];
	for (const row of active) {
		try {
			const did = await driveOne(row, now);
			if (did === 'started') started.push(row.id);
			if (did === 'stopped') stopped.push(row.id);
		} catch (err) {
			log.error({ err: loggableError(err), staged: row.id }, 'staged system update not moved on');
		}
	}
	return { started, stopped };
}

async function driveOne(row: SysStagedUpdate, now: Date): Promise<'started' | 'stopped' | null> {
	const k = row.current;
	const stage = row.stages[k]!;
	if (row.state === 'running') {
		const run = await getRun(stage.runId!);
		if (run.state !== 'succeeded' && run.state !== 'failed' && run.state !== 'cancelled') return null;
		if (run.state !== 'succeeded') {
			const why = run.state === 'cancelled' ? 'was cancelled' : `failed (${failures(run)})`;
			const last = k === row.stages.length - 1;
			return stop(row, `${capital(stageName(stage))} ${why}${last ? '.' : ': the later stages were not started.'}`);
		}
		const finished = run.endedAt ?? now;
		const stages = row.stages.map((s, i) => (i === k ? { ...s, finishedAt: finished.toISOString() } : s));
		const last = k === row.stages.length - 1;
		await update(row, 'running', {
			stages,
			state: last ? 'succeeded' : 'soaking',
			nextStartAt: last ? null : new Date(finished.getTime() + row.soakSeconds * 1000)
		});
		return null;
	}
	// Soaking: a failure on any node already updated stops the rest, even when the soak is over.
	const done = row.stages.slice(0, k + 1).flatMap((s) => s.nodeIds);
	const failed = await db()
		.select({ name: nodes.name, error: sysNodeScans.updateError })
		.from(sysNodeScans)
		.innerJoin(nodes, eq(nodes.id, sysNodeScans.nodeId))
		.where(and(inArray(sysNodeScans.nodeId, done), isNotNull(sysNodeScans.updateError)));
	if (failed.length) {
		const f = failed[0]!;
		return stop(
			row,
			`${f.name} failed while ${stageName(stage)} soaked (${f.error}): the later stages were not started.`
		);
	}
	if (now < row.nextStartAt!) return null;
	const next = row.stages[k + 1]!;
	// Claimed first (compare-and-set on the stage), so two consoles never start the same stage twice.
	if (!(await update(row, 'soaking', { state: 'running', current: k + 1, nextStartAt: null }))) return null;
	const list = await db().select().from(nodes).where(inArray(nodes.id, next.nodeIds));
	try {
		// Pinned to the approved plan: a version published since the review is not installed, the node refuses.
		const run = await startUpdate(row.actor, list, row.request, {
			rebootOnly: row.request.rebootOnly,
			approved: next.approved
		});
		const stages = row.stages.map((s, i) => (i === k + 1 ? { ...s, runId: run.id } : s));
		await db().update(sysStagedUpdates).set({ stages, updatedAt: new Date() }).where(eq(sysStagedUpdates.id, row.id));
		return 'started';
	} catch (err) {
		if (err instanceof ServiceError && err.code === 'conflict') {
			// A node of the stage is busy with another run: the stage starts at the next check.
			await db()
				.update(sysStagedUpdates)
				.set({ state: 'soaking', current: k, nextStartAt: row.nextStartAt, updatedAt: new Date() })
				.where(eq(sysStagedUpdates.id, row.id));
			log.info({ staged: row.id, reason: err.message }, 'staged system update waits for its next stage');
			return null;
		}
		const reason = err instanceof Error ? err.message : String(err);
		return stop({ ...row, current: k + 1, state: 'running' }, `${capital(stageName(next))} could not start: ${reason}`);
	}
}

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/**
 * Why a stage's run failed, with each failed node's own error (a node that drifted from the approved plan says
 * what changed), so the page's Staged updates card shows the operator what to look at.
 */
function failures(run: Awaited<ReturnType<typeof getRun>>): string {
	const failed = run.tasks.filter((t) => t.state === 'failed' && t.error);
	const shown = failed.slice(0, 3).map((t) => `${t.nodeName}: ${t.error}`);
	if (failed.length > shown.length) shown.push(`and ${failed.length - shown.length} more`);
	const head = run.reason ?? 'a node failed';
	return shown.length ? `${head}: ${shown.join('; ')}` : head;
}

async function update(
	row: SysStagedUpdate,
	from: SysStagedUpdate['state'],
	set: Partial<typeof sysStagedUpdates.$inferInsert>
): Promise<boolean> {
	const out = await db()
		.update(sysStagedUpdates)
		.set({ ...set, updatedAt: new Date() })
		.where(
			and(eq(sysStagedUpdates.id, row.id), eq(sysStagedUpdates.state, from), eq(sysStagedUpdates.current, row.current))
		)
		.returning({ id: sysStagedUpdates.id });
	return out.length === 1;
}

async function stop(row: SysStagedUpdate, reason: string): Promise<'stopped' | null> {
	if (!(await update(row, row.state, { state: 'stopped', reason, nextStartAt: null }))) return null;
	await recordAudit(row.actor, {
		action: 'system_updates.staged_stopped',
		targetType: 'staged_update',
		targetId: row.id,
		details: { reason }
	});
	return 'stopped';
}

/** What the System Updates page shows: the staged updates still going, and the last few that ended. */
export interface StagedView {
	id: string;
	state: SysStagedUpdate['state'];
	stages: { name: string; nodes: number; run_id: string | null; finished_at: string | null }[];
	current: number;
	soak_hours: number;
	next_start_at: string | null;
	reason: string | null;
	created_at: string;
}

export async function listStagedUpdates(limit = 5): Promise<StagedView[]> {
	const rows = await db().select().from(sysStagedUpdates).orderBy(desc(sysStagedUpdates.createdAt)).limit(limit);
	return rows.map((r) => ({
		id: r.id,
		state: r.state,
		stages: r.stages.map((s) => ({
			name: stageName(s),
			nodes: s.nodeIds.length,
			run_id: s.runId,
			finished_at: s.finishedAt
		})),
		current: r.current,
		soak_hours: r.soakSeconds / 3600,
		next_start_at: r.nextStartAt?.toISOString() ?? null,
		reason: r.reason,
		created_at: r.createdAt.toISOString()
	}));
}
