import { and, asc, eq, inArray, or } from 'drizzle-orm';
import type { z } from 'zod';
import type { holdSchema } from '$lib/schemas/system-updates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { sysHolds, type Node, type SysHold } from '$lib/server/db/schema';
import { notFound } from '$lib/server/errors';
import { resolveNodes } from './targets';

/** Hold patterns that apply to a node: its own and those of its roles, with where each comes from. */
export async function holdPatternsFor(node: Pick<Node, 'id' | 'roles'>): Promise<{ pattern: string; by: string }[]> {
	const rows = await db()
		.select()
		.from(sysHolds)
		.where(
			or(
				and(eq(sysHolds.scope, 'node'), eq(sysHolds.target, node.id)),
				node.roles.length ? and(eq(sysHolds.scope, 'role'), inArray(sysHolds.target, node.roles)) : undefined
			)
		)
		.orderBy(asc(sysHolds.pattern));
	return rows.map((h) => ({ pattern: h.pattern, by: h.scope === 'node' ? 'this node' : `role ${h.target}` }));
}

export async function listHolds(): Promise<SysHold[]> {
	return db().select().from(sysHolds).orderBy(asc(sysHolds.scope), asc(sysHolds.target), asc(sysHolds.pattern));
}

export async function createHold(actor: Actor, input: z.infer<typeof holdSchema>): Promise<SysHold> {
	const target = input.scope === 'node' ? (await resolveNodes([input.target], 'target'))[0]!.id : input.target;
	const [row] = await db()
		.insert(sysHolds)
		.values({ scope: input.scope, target, pattern: input.pattern, reason: input.reason ?? null, createdBy: actor.name })
		.onConflictDoUpdate({
			target: [sysHolds.scope, sysHolds.target, sysHolds.pattern],
			set: { reason: input.reason ?? null }
		})
		.returning();
	await recordAudit(actor, {
		action: 'system_updates.hold',
		targetType: input.scope,
		targetId: target,
		details: { pattern: input.pattern, reason: input.reason ?? null }
	});
	return row!;
}

export async function deleteHold(actor: Actor, id: string): Promise<void> {
	const [row] = await db().delete(sysHolds).where(eq(sysHolds.id, id)).returning();
	if (!row) throw notFound('Hold');
	await recordAudit(actor, {
		action: 'system_updates.unhold',
		targetType: row.scope,
		targetId: row.target,
		details: { pattern: row.pattern }
	});
}
