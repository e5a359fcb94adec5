import { and, asc, eq, inArray, or } from 'drizzle-orm';
import type { z } from 'zod';
import { DAYS, type windowSchema } from '$lib/schemas/system-updates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { sysWindows, type Node, type SysWindow } from '$lib/server/db/schema';
import { notFound } from '$lib/server/errors';
import { resolveNodes } from './targets';
import { shortfall, type WindowShortfall } from './window-fit';
import { closesAfter, insideWindow, nextWindow, skipNextUntil, type WindowSpec } from './windows-time';

/** Maintenance windows per node, role or label (docs/system-updates.md, "Maintenance windows"). */

export const specOf = (w: SysWindow): WindowSpec => ({
	start: w.start,
	end: w.end,
	timeZone: w.timeZone,
	days: w.days,
	skipUntil: w.skipUntil
});

/** The window that governs a node: its own, else its first role's that has one, else its first label's. */
export function windowFor(node: Pick<Node, 'id' | 'roles' | 'labels'>, all: SysWindow[]): SysWindow | null {
	return (
		all.find((w) => w.scope === 'node' && w.target === node.id) ??
		node.roles.map((r) => all.find((w) => w.scope === 'role' && w.target === r)).find(Boolean) ??
		Object.entries(node.labels)
			.map(([k, v]) => all.find((w) => w.scope === 'label' && w.target === `${k}=${v}`))
			.find(Boolean) ??
		null
	);
}

/** Whether each node is inside its window now (no window: never, so nothing automatic happens to it). */
export async function windowsOf(list: Pick<Node, 'id' | 'roles' | 'labels'>[]): Promise<Map<string, SysWindow | null>> {
	const all = list.length ? await listWindows(list) : [];
	return new Map(list.map((n) => [n.id, windowFor(n, all)]));
}

export function nodeInsideWindow(window: SysWindow | null, at: Date): boolean {
	return window ? insideWindow(specOf(window), at) : false;
}

/**
 * Whether the window holds `seconds` of work: what is left of it when it is open at `now`, else its next
 * opening. Null when it does (or never opens).
 */
export function windowShortfall(window: SysWindow, seconds: number, now: Date): WindowShortfall | null {
	const spec = specOf(window);
	const closes = closesAfter(spec, now);
	if (closes) return shortfall(seconds, now, closes);
	const next = nextWindow(spec, now);
	return next ? shortfall(seconds, next.opens, next.closes) : null;
}

/** When the node's window, open at `at`, closes. */
export function windowClosesAfter(window: SysWindow, at: Date): Date | null {
	return closesAfter(specOf(window), at);
}

async function listWindows(forNodes?: Pick<Node, 'id' | 'roles' | 'labels'>[]): Promise<SysWindow[]> {
	if (!forNodes) return db().select().from(sysWindows).orderBy(asc(sysWindows.scope), asc(sysWindows.target));
	const roles = [...new Set(forNodes.flatMap((n) => n.roles))];
	const labels = [...new Set(forNodes.flatMap((n) => Object.entries(n.labels).map(([k, v]) => `${k}=${v}`)))];
	return db()
		.select()
		.from(sysWindows)
		.where(
			or(
				and(
					eq(sysWindows.scope, 'node'),
					inArray(
						sysWindows.target,
						forNodes.map((n) => n.id)
					)
				),
				roles.length ? and(eq(sysWindows.scope, 'role'), inArray(sysWindows.target, roles)) : undefined,
				labels.length ? and(eq(sysWindows.scope, 'label'), inArray(sysWindows.target, labels)) : undefined
			)
		);
}

export { listWindows };

export async function saveWindow(actor: Actor, input: z.infer<typeof windowSchema>): Promise<SysWindow> {
	const target = input.scope === 'node' ? (await resolveNodes([input.target], 'target'))[0]!.id : input.target;
	const values = {
		start: input.start,
		end: input.end,
		timeZone: input.time_zone,
		days: [...new Set(input.days)].sort(),
		skipUntil: null
	};
	const [row] = await db()
		.insert(sysWindows)
		.values({ scope: input.scope, target, createdBy: actor.name, ...values })
		.onConflictDoUpdate({ target: [sysWindows.scope, sysWindows.target], set: values })
		.returning();
	await recordAudit(actor, {
		action: 'system_updates.window',
		targetType: input.scope,
		targetId: target,
		details: { start: input.start, end: input.end, time_zone: input.time_zone, days: values.days }
	});
	return row!;
}

export async function deleteWindow(actor: Actor, id: string): Promise<void> {
	const [row] = await db().delete(sysWindows).where(eq(sysWindows.id, id)).returning();
	if (!row) throw notFound('Window');
	await recordAudit(actor, { action: 'system_updates.window_delete', targetType: row.scope, targetId: row.target });
}

/** "Skip the next window": shut until the end of the current or next one; `false` undoes it. */
export async function skipNextWindow(actor: Actor, id: string, skip: boolean, now = new Date()): Promise<SysWindow> {
	const [w] = await db().select().from(sysWindows).where(eq(sysWindows.id, id));
	if (!w) throw notFound('Window');
	const until = skip ? skipNextUntil(specOf({ ...w, skipUntil: null }), now) : null;
	const [row] = await db().update(sysWindows).set({ skipUntil: until }).where(eq(sysWindows.id, id)).returning();
	await recordAudit(actor, {
		action: skip ? 'system_updates.window_skip' : 'system_updates.window_unskip',
		targetType: w.scope,
		targetId: w.target,
		details: { skip_until: until }
	});
	return row!;
}

export const presentWindow = (w: SysWindow) => ({
	id: w.id,
	scope: w.scope,
	target: w.target,
	start: w.start,
	end: w.end,
	time_zone: w.timeZone,
	days: w.days.map((d) => DAYS[d]!),
	skip_until: w.skipUntil,
	next: nextWindow(specOf(w), new Date())
});
