import { setTimeout as sleep } from 'node:timers/promises';
import { inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodes, type SysWindow } from '$lib/server/db/schema';
import { StepFailed, type Step } from '$lib/server/engine';
import { nodeInsideWindow, specOf, windowsOf } from '$lib/server/sysupdates/windows';
import { nextWindow } from '$lib/server/sysupdates/windows-time';
import type { RolloutStageParams } from './flow';

/**
 * A rollout that respects maintenance windows (docs/releases.md, "Maintenance windows"): each node is updated
 * only inside the window System Updates defines for it (its own, its role's or its label's). A node with no
 * window has nothing to wait for.
 */

/** How often a waiting node looks at its window again: an operator may edit or add one meanwhile. */
const RECHECK_MS = 10_000;

/** When the node's window opens next, or null when the node may be updated now (inside it, or no window). */
export function windowWait(window: SysWindow | null, now: Date): { opens: Date | null; window: SysWindow } | null {
	if (!window || nodeInsideWindow(window, now)) return null;
	return { opens: nextWindow(specOf(window), now)?.opens ?? null, window };
}

function describe(w: SysWindow): string {
	return `${w.start}–${w.end} ${w.timeZone} (the ${w.scope} window of ${w.scope === 'node' ? 'the node' : w.target})`;
}

/**
 * The first step of a rollout's update on a node: waits, holding the node's place in the stage, until its
 * maintenance window is open. The rollout page shows the node as waiting for its window meanwhile.
 */
export const windowStep: Step<RolloutStageParams> = {
	name: 'window',
	// A window opens at least once a week; a node whose window never opens fails below.
	deadlineMs: 8 * 24 * 3_600_000,
	async do(ctx) {
		if (!ctx.params.respect_windows) return;
		let said = '';
		for (;;) {
			const window = (await windowsOf([ctx.node])).get(ctx.node.id) ?? null;
			const wait = windowWait(window, new Date());
			if (!wait) {
				if (said) ctx.log(`the maintenance window is open: updating`);
				return;
			}
			if (!wait.opens) throw new StepFailed(`its maintenance window ${describe(wait.window)} never opens`);
			const line = `waiting for the maintenance window ${describe(wait.window)}: opens at ${wait.opens.toISOString()}`;
			if (line !== said) ctx.log(line);
			said = line;
			await sleep(Math.min(RECHECK_MS, Math.max(1_000, wait.opens.getTime() - Date.now())), undefined, {
				signal: ctx.signal
			});
		}
	}
};

/** Per node of `ids` that its window holds now: when the window opens (null: never). */
export async function windowOpenings(ids: string[], now = new Date()): Promise<Map<string, Date | null>> {
	if (!ids.length) return new Map();
	const rows = await db()
		.select({ id: nodes.id, roles: nodes.roles, labels: nodes.labels })
		.from(nodes)
		.where(inArray(nodes.id, ids));
	const windows = await windowsOf(rows);
	const out = new Map<string, Date | null>();
	for (const id of ids) {
		const wait = windowWait(windows.get(id) ?? null, now);
		if (wait) out.set(id, wait.opens);
	}
	return out;
}

/**
 * The stage's nodes in the order their windows open (inside one or without one first, stable otherwise), so
 * that the stage's concurrency goes to nodes that can be updated before those that must wait.
 */
export async function orderByWindow(ids: string[], now = new Date()): Promise<string[]> {
	const openings = await windowOpenings(ids, now);
	const at = (id: string) =>
		openings.has(id) ? (openings.get(id)?.getTime() ?? Number.MAX_SAFE_INTEGER) : Number.MIN_SAFE_INTEGER;
	return [...ids].sort((a, b) => at(a) - at(b));
}
