import { and, desc, eq, inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { applianceUpdates, rolloutNodes, type ApplianceUpdate, type ApplianceUpdateState } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';

/**
 * Each appliance update's state as the A/B flow moves it (docs/appliances.md, "States"), one row per task,
 * and an `appliance.update` event for every change, so pages follow it live. A rollout's node row follows too.
 */

export interface UpdateKey {
	taskId: string;
	runId: string;
	nodeId: string;
	nodeName: string;
	imageId: string;
	rolloutId?: string | null;
}

export async function recordUpdate(
	key: UpdateKey,
	state: ApplianceUpdateState,
	patch: Partial<Pick<ApplianceUpdate, 'bytes' | 'total' | 'fromSlot' | 'toSlot' | 'error' | 'fallback'>> = {},
	/** The rollout node's state when it is not the update's (`fell_back`: failed after its task succeeded). */
	options: { rolloutNodeState?: 'fell_back' } = {}
): Promise<void> {
	const values = { state, ...patch, updatedAt: new Date() };
	const [row] = await db()
		.insert(applianceUpdates)
		.values({
			taskId: key.taskId,
			runId: key.runId,
			nodeId: key.nodeId,
			imageId: key.imageId,
			rolloutId: key.rolloutId ?? null,
			...values
		})
		.onConflictDoUpdate({ target: applianceUpdates.taskId, set: values })
		.returning();
	if (key.rolloutId) {
		await db()
			.update(rolloutNodes)
			.set({ state: options.rolloutNodeState ?? state, error: row!.error, updatedAt: new Date() })
			.where(and(eq(rolloutNodes.rolloutId, key.rolloutId), eq(rolloutNodes.nodeId, key.nodeId)));
	}
	await recordEvent({
		type: 'appliance.update',
		runId: key.runId,
		taskId: key.taskId,
		nodeId: key.nodeId,
		data: {
			node: key.nodeName,
			rollout_id: key.rolloutId ?? null,
			state,
			bytes: row!.bytes,
			total: row!.total,
			from_slot: row!.fromSlot,
			to_slot: row!.toSlot,
			error: row!.error,
			fallback: row!.fallback
		}
	});
}

export async function updatesOfRuns(runIds: string[]): Promise<ApplianceUpdate[]> {
	if (!runIds.length) return [];
	return db().select().from(applianceUpdates).where(inArray(applianceUpdates.runId, runIds));
}

export async function recentUpdates(limit = 200): Promise<ApplianceUpdate[]> {
	return db().select().from(applianceUpdates).orderBy(desc(applianceUpdates.updatedAt)).limit(limit);
}

export async function updateOfTask(taskId: string): Promise<ApplianceUpdate | null> {
	const [row] = await db().select().from(applianceUpdates).where(eq(applianceUpdates.taskId, taskId));
	return row ?? null;
}

export const presentUpdate = (u: ApplianceUpdate, nodeName?: string) => ({
	id: u.id,
	task_id: u.taskId,
	run_id: u.runId,
	node_id: u.nodeId,
	node: nodeName,
	image_id: u.imageId,
	rollout_id: u.rolloutId,
	state: u.state,
	bytes: u.bytes,
	total: u.total,
	from_slot: u.fromSlot,
	to_slot: u.toSlot,
	error: u.error,
	fallback: u.fallback,
	started_at: u.startedAt.toISOString(),
	updated_at: u.updatedAt.toISOString()
});
