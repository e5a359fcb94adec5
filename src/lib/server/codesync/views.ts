import { and, asc, desc, eq, gt, isNotNull, sql, type SQL } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodeCodeVersions, nodes } from '$lib/server/db/schema';
import { runNumbers } from '$lib/server/engine';
import { behindCondition, versionsFor, type RoleVersion } from './status';

/**
 * Read-only views for the Code Sync pages (Fleet Overview, node page, Code Sync page). Everything that can
 * grow with the fleet is counted or paged in the database.
 */

/** A node has some role whose latest notified commit it does not run. */
const anyRoleBehind: SQL = sql`exists (select 1 from unnest(${nodes.roles}) as nr(role) where ${behindCondition(sql`nr.role`)})`;

export interface RoleSummary {
	/** Nodes that have the role. */
	nodes: number;
	/** Of those, nodes not on the role's latest commit. */
	behind: number;
	/** Of those, nodes whose last update of the role failed. */
	failed: number;
	/** When a node last recorded a commit for the role. */
	lastSyncedAt: Date | null;
}

/** Per role: how many nodes have it, lag behind it, failed to update it; when one last synced it. */
export async function roleSummaries(roleNames: string[]): Promise<Map<string, RoleSummary>> {
	const out = new Map<string, RoleSummary>();
	await Promise.all(
		roleNames.map(async (role) => {
			const hasRole = sql`${role} = any(${nodes.roles})`;
			const [counts] = await db()
				.select({
					nodes: sql<number>`count(*)::int`,
					behind: sql<number>`(count(*) filter (where ${behindCondition(role)}))::int`
				})
				.from(nodes)
				.where(hasRole);
			const [versions] = await db()
				.select({
					failed: sql<number>`(count(*) filter (where ${nodeCodeVersions.lastError} is not null))::int`,
					lastSyncedAt: sql<string | null>`max(${nodeCodeVersions.syncedAt})`
				})
				.from(nodeCodeVersions)
				.innerJoin(nodes, eq(nodes.id, nodeCodeVersions.nodeId))
				.where(and(eq(nodeCodeVersions.role, role), hasRole));
			out.set(role, {
				nodes: Number(counts?.nodes ?? 0),
				behind: Number(counts?.behind ?? 0),
				failed: Number(versions?.failed ?? 0),
				// An aggregate comes back as text from the driver, not as the column's Date.
				lastSyncedAt: versions?.lastSyncedAt ? new Date(versions.lastSyncedAt) : null
			});
		})
	);
	return out;
}

export interface RoleFailure {
	nodeId: string;
	nodeName: string;
	failedCommit: string | null;
	error: string;
	failedAt: Date | null;
	runId: string | null;
	runNumber: number | null;
}

/** The most recent failures to update `role`, on nodes that still have it. */
export async function roleFailures(role: string, limit = 5): Promise<RoleFailure[]> {
	const rows = await db()
		.select({
			nodeId: nodes.id,
			nodeName: nodes.name,
			failedCommit: nodeCodeVersions.failedCommit,
			error: nodeCodeVersions.lastError,
			failedAt: nodeCodeVersions.failedAt,
			runId: nodeCodeVersions.failedRunId
		})
		.from(nodeCodeVersions)
		.innerJoin(nodes, eq(nodes.id, nodeCodeVersions.nodeId))
		.where(
			and(eq(nodeCodeVersions.role, role), isNotNull(nodeCodeVersions.lastError), sql`${role} = any(${nodes.roles})`)
		)
		.orderBy(desc(nodeCodeVersions.failedAt))
		.limit(limit);
	const numbers = await runNumbers(rows.flatMap((r) => (r.runId ? [r.runId] : [])));
	return rows.map((r) => ({ ...r, error: r.error ?? '', runNumber: (r.runId && numbers.get(r.runId)) || null }));
}

export interface BehindNode {
	id: string;
	name: string;
	/** The node's roles that lag their latest commit. */
	roles: RoleVersion[];
}

/** Nodes behind on some role, by name, a page at a time (keyset on the name), and how many there are. */
export async function nodesBehind(
	limit = 100,
	cursor?: string
): Promise<{ items: BehindNode[]; total: number; nextCursor: string | null }> {
	const rows = await db()
		.select({ id: nodes.id, name: nodes.name, roles: nodes.roles })
		.from(nodes)
		.where(and(anyRoleBehind, cursor ? gt(nodes.name, cursor) : undefined))
		.orderBy(asc(nodes.name))
		.limit(limit + 1);
	const page = rows.slice(0, limit);
	const [[count], versions] = await Promise.all([
		db()
			.select({ n: sql<number>`count(*)::int` })
			.from(nodes)
			.where(anyRoleBehind),
		versionsFor(page)
	]);
	return {
		items: page.map((n) => ({ id: n.id, name: n.name, roles: (versions.get(n.id) ?? []).filter((v) => v.behind) })),
		total: Number(count?.n ?? 0),
		nextCursor: rows.length > limit ? page.at(-1)!.name : null
	};
}

/** Per role of a node, the run whose update of it failed (the run page has the log). */
export async function failedRunsOf(nodeId: string): Promise<Map<string, { id: string; number: number }>> {
	const rows = await db()
		.select({ role: nodeCodeVersions.role, id: nodeCodeVersions.failedRunId })
		.from(nodeCodeVersions)
		.where(and(eq(nodeCodeVersions.nodeId, nodeId), isNotNull(nodeCodeVersions.failedRunId)));
	const numbers = await runNumbers(rows.map((r) => r.id!));
	return new Map(
		rows.flatMap((r) => (numbers.has(r.id!) ? [[r.role, { id: r.id!, number: numbers.get(r.id!)! }]] : []))
	);
}
