import { and, desc, eq, isNull } from 'drizzle-orm';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import {
	applianceBadReleases,
	applianceImages,
	applianceUpdates,
	releases,
	type ApplianceBadRelease,
	type Node
} from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { conflict, notFound } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { pauseRollout } from '$lib/server/rollouts/driver';
import { recordUpdate } from './records';
import type { SlotReport } from './remote';

/*
 * Fallbacks seen fleet-wide (docs/appliances.md, "Fallbacks"): an appliance that went back to its good slot on
 * its own (a boot loop, the watchdog) marks the release bad for its kind of hardware (its `hardware` label).
 * The release is not offered to that hardware again until an operator clears the mark, and a rollout it came
 * from pauses at once, whatever its threshold says.
 */

export const hardwareOf = (node: Pick<Node, 'labels'>): string => node.labels.hardware ?? 'unlabelled';

interface Fallback {
	node: Pick<Node, 'id' | 'name' | 'labels'>;
	/** The task of the update the fallback ended: its row carries the fallback once recorded. */
	taskId: string;
	releaseId: string;
	rolloutId?: string | null;
	runId: string;
	reason: string;
}

/**
 * Claims the update's fallback and records what stands on it, in one transaction: the release's mark for the
 * hardware and the audit row commit with the claim or not at all. The claim is a conditional write of the
 * update's `fallback`, so whoever sees the fallback first records it and every later sighting records nothing:
 * the task that rebooted the appliance, the same task run again after its console lost it (its memo, written
 * when a step ends, may not say it recorded one), and the health sweep of any console. `afterSuccess` claims
 * only an update that had `succeeded` (the sweep's case).
 */
async function claimFallback(f: Fallback, afterSuccess: boolean): Promise<boolean> {
	const hardware = hardwareOf(f.node);
	return db().transaction(async (tx) => {
		const [claimed] = await tx
			.update(applianceUpdates)
			.set({ fallback: f.reason })
			.where(
				and(
					eq(applianceUpdates.taskId, f.taskId),
					isNull(applianceUpdates.fallback),
					afterSuccess ? eq(applianceUpdates.state, 'succeeded') : undefined
				)
			)
			.returning({ id: applianceUpdates.id });
		if (!claimed) return false;
		const values = {
			nodeName: f.node.name,
			reason: f.reason,
			createdAt: new Date(),
			clearedAt: null,
			clearedBy: null
		};
		await tx
			.insert(applianceBadReleases)
			.values({ releaseId: f.releaseId, hardware, ...values })
			.onConflictDoUpdate({ target: [applianceBadReleases.releaseId, applianceBadReleases.hardware], set: values });
		await recordAudit(
			systemActor,
			{
				action: 'appliance.fallback',
				targetType: 'node',
				targetId: f.node.id,
				details: { release_id: f.releaseId, hardware, reason: f.reason }
			},
			tx
		);
		return true;
	});
}

/** Tells the pages, and pauses the rollout the update came from, once the fallback is on record. */
async function announceFallback(f: Fallback): Promise<void> {
	const hardware = hardwareOf(f.node);
	await recordEvent({
		type: 'appliance.fallback',
		runId: f.runId,
		nodeId: f.node.id,
		data: { node: f.node.name, release_id: f.releaseId, hardware, reason: f.reason }
	});
	if (f.rolloutId) {
		const why = `${f.node.name} fell back to its good slot on its own (${f.reason}); the release is marked bad for hardware ${hardware}`;
		await pauseRollout(systemActor, f.rolloutId, why).catch((err: unknown) =>
			log.info({ err: loggableError(err), rollout: f.rolloutId }, 'rollout not paused after a fallback')
		);
	}
}

/** A fallback the update's own task found. Returns whether this sighting recorded it (once per update). */
export async function recordFallback(f: Fallback): Promise<boolean> {
	if (!(await claimFallback(f, false))) return false;
	await announceFallback(f);
	return true;
}

/**
 * A fallback the health sweep finds after the update ended (docs/appliances.md, "Fallbacks"): the appliance's
 * last update succeeded, and since then it went back to its other slot on its own, saying why (its watchdog,
 * once the console stayed unreachable). It counts as the failed gate it stands for: the update becomes
 * `rolled_back` with the reason, its rollout node `fell_back` (a failure of its stage), the release is marked bad
 * for the hardware and the rollout pauses. An operator's own `flotilla-slot --rollback` leaves no reason, so it
 * is not one. Returns whether this report recorded a fallback (once per update, however many consoles sweep).
 */
export async function recordSweptFallback(node: Node, report: SlotReport): Promise<boolean> {
	if (!report.fallback) return false;
	const [last] = await db()
		.select({ update: applianceUpdates, releaseId: applianceImages.releaseId })
		.from(applianceUpdates)
		.innerJoin(applianceImages, eq(applianceImages.id, applianceUpdates.imageId))
		.where(eq(applianceUpdates.nodeId, node.id))
		.orderBy(desc(applianceUpdates.startedAt))
		.limit(1);
	const update = last?.update;
	if (!update || update.state !== 'succeeded' || update.fallback || !update.toSlot) return false;
	if (report.active === update.toSlot) return false;
	const fallback: Fallback = {
		node,
		taskId: update.taskId,
		releaseId: last.releaseId,
		rolloutId: update.rolloutId,
		runId: update.runId,
		reason: report.fallback
	};
	if (!(await claimFallback(fallback, true))) return false;
	await recordUpdate(
		{
			taskId: update.taskId,
			runId: update.runId,
			nodeId: node.id,
			nodeName: node.name,
			imageId: update.imageId,
			rolloutId: update.rolloutId
		},
		'rolled_back',
		{
			fallback: report.fallback,
			error: `after the update succeeded, the appliance went back to slot ${report.active} on its own: ${report.fallback}`
		},
		{ rolloutNodeState: 'fell_back' }
	);
	await announceFallback(fallback);
	return true;
}

/** The standing mark that keeps a release from this hardware, or null. */
export async function badReleaseFor(
	releaseId: string,
	node: Pick<Node, 'labels'>
): Promise<ApplianceBadRelease | null> {
	const [row] = await db()
		.select()
		.from(applianceBadReleases)
		.where(
			and(
				eq(applianceBadReleases.releaseId, releaseId),
				eq(applianceBadReleases.hardware, hardwareOf(node)),
				isNull(applianceBadReleases.clearedAt)
			)
		);
	return row ?? null;
}

export async function listBadReleases() {
	return db()
		.select({ mark: applianceBadReleases, version: releases.version })
		.from(applianceBadReleases)
		.innerJoin(releases, eq(releases.id, applianceBadReleases.releaseId))
		.orderBy(desc(applianceBadReleases.createdAt));
}

/** An operator decides the release may be offered to that hardware again. */
export async function clearBadRelease(actor: Actor, id: string): Promise<ApplianceBadRelease> {
	const [row] = await db().select().from(applianceBadReleases).where(eq(applianceBadReleases.id, id));
	if (!row) throw notFound('Mark');
	if (row.clearedAt) throw conflict(`Already cleared by ${row.clearedBy}`, { state: 'cleared' });
	const [done] = await db()
		.update(applianceBadReleases)
		.set({ clearedAt: new Date(), clearedBy: actor.name })
		.where(and(eq(applianceBadReleases.id, id), isNull(applianceBadReleases.clearedAt)))
		.returning();
	if (!done) throw conflict('Already cleared', { state: 'cleared' });
	await recordAudit(actor, {
		action: 'appliance.bad_release_clear',
		targetType: 'release',
		targetId: row.releaseId,
		details: { hardware: row.hardware, reason: row.reason }
	});
	return done;
}

export const presentBadRelease = (m: ApplianceBadRelease, version?: string) => ({
	id: m.id,
	release_id: m.releaseId,
	version,
	hardware: m.hardware,
	node: m.nodeName,
	reason: m.reason,
	created_at: m.createdAt.toISOString(),
	cleared_at: m.clearedAt?.toISOString() ?? null,
	cleared_by: m.clearedBy
});
