import { inArray, sql, type SQL } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeRoles, nodeCodeVersions, nodes, type CodeRole, type NodeCodeVersion } from '$lib/server/db/schema';
import type { StatusPart } from '$lib/server/fleet/status';

/**
 * The node lags `role`: the role has a notified commit, and the node's recorded commit for it is not that
 * commit. A notification may carry an abbreviated commit, so a recorded full commit matches by prefix.
 * (Per node and role, for one role's count; whole-fleet status uses the set-based parts below.)
 */
export function behindCondition(role: string | SQL): SQL {
	return sql`exists (select 1 from code_roles cr where cr.name = ${role} and cr.latest_commit is not null
		and not exists (select 1 from node_code_versions v where v.node_id = ${nodes.id} and v.role = cr.name
			and left(v.commit, length(cr.latest_commit)) = cr.latest_commit))`;
}

/**
 * Code Sync's parts of the fleet status (fleet/status.ts), after the fleet's own:
 *
 * - FAILED: the last update of one of its roles failed (cleared by the next success or mark-synced);
 * - OUTDATED: one of its roles has a notified commit the node does not run.
 *
 * Each is one set-based subquery over the whole fleet: `wanted` are the node's roles that have a notified
 * commit, `current` those it runs the latest of.
 */
export const codeSyncStatusParts: StatusPart[] = [
	{
		status: 'FAILED',
		precedence: 40,
		nodes: () => sql`(select v.node_id from node_code_versions v
			join nodes vn on vn.id = v.node_id and v.role = any(vn.roles)
			where v.last_error is not null group by v.node_id)`
	},
	{
		status: 'OUTDATED',
		precedence: 50,
		nodes: () => sql`(select nr.id as node_id
			from (select rn.id, count(*) as wanted
				from nodes rn cross join lateral unnest(rn.roles) as nr(role)
				join code_roles cr on cr.name = nr.role and cr.latest_commit is not null
				group by rn.id) nr
			left join (select v.node_id, count(*) as current
				from node_code_versions v
				join nodes vn on vn.id = v.node_id and v.role = any(vn.roles)
				join code_roles cr on cr.name = v.role and cr.latest_commit is not null
					and left(v.commit, length(cr.latest_commit)) = cr.latest_commit
				group by v.node_id) vs on vs.node_id = nr.id
			where nr.wanted > coalesce(vs.current, 0))`
	}
];

export interface RoleVersion {
	role: string;
	/** The commit the node runs for the role (null when nothing is recorded yet). */
	commit: string | null;
	/** The role's latest notified commit (null before the first notification). */
	latest: string | null;
	behind: boolean;
	syncedAt: Date | null;
	lastError: string | null;
	failedCommit: string | null;
	failedAt: Date | null;
}

/** Per node, each of its roles with the deployed and the latest commit. */
export async function versionsFor(nodeRows: { id: string; roles: string[] }[]): Promise<Map<string, RoleVersion[]>> {
	const ids = nodeRows.map((n) => n.id);
	const roleNames = [...new Set(nodeRows.flatMap((n) => n.roles))];
	const [versions, roles] = await Promise.all([
		ids.length
			? db().select().from(nodeCodeVersions).where(inArray(nodeCodeVersions.nodeId, ids))
			: Promise.resolve([] as NodeCodeVersion[]),
		roleNames.length
			? db().select().from(codeRoles).where(inArray(codeRoles.name, roleNames))
			: Promise.resolve([] as CodeRole[])
	]);
	const latest = new Map(roles.map((r) => [r.name, r.latestCommit]));
	const byKey = new Map(versions.map((v) => [`${v.nodeId} ${v.role}`, v]));
	const out = new Map<string, RoleVersion[]>();
	for (const n of nodeRows) {
		out.set(
			n.id,
			n.roles.map((role) => {
				const v = byKey.get(`${n.id} ${role}`);
				const head = latest.get(role) ?? null;
				const commit = v?.commit ?? null;
				return {
					role,
					commit,
					latest: head,
					behind: head !== null && !(commit ?? '').startsWith(head),
					syncedAt: v?.syncedAt ?? null,
					lastError: v?.lastError ?? null,
					failedCommit: v?.failedCommit ?? null,
					failedAt: v?.failedAt ?? null
				};
			})
		);
	}
	return out;
}

export const presentVersion = (v: RoleVersion) => ({
	role: v.role,
	commit: v.commit,
	latest: v.latest,
	behind: v.behind,
	synced_at: v.syncedAt,
	last_error: v.lastError,
	failed_commit: v.failedCommit,
	failed_at: v.failedAt
});
