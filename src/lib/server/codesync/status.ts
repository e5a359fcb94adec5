import { eq, inArray, sql, type SQL } from 'drizzle-orm';
import { fleetStatuses } from '$lib/schemas/nodes';
import { db } from '$lib/server/db';
import { codeRoles, nodeCodeVersions, nodes, type CodeRole, type NodeCodeVersion } from '$lib/server/db/schema';

/**
 * A node's status on the Fleet Overview, derived in SQL from what the database knows, so that filtering,
 * counting and paging happen in the database for fleets of thousands. In order of precedence:
 *
 * - UPDATING: a task of a run that changes nodes is running on it;
 * - PENDING: such a run has a task for it waiting its turn;
 * - UNREACHABLE: the last contact failed, or its host key changed (nothing can be done to it until an
 *   admin looks);
 * - FAILED: the last update of one of its roles failed (cleared by the next success or mark-synced);
 * - OUTDATED: one of its roles has a notified commit the node does not run;
 * - UP_TO_DATE: otherwise.
 */
export { fleetStatuses };
export type FleetStatus = (typeof fleetStatuses)[number];

/** Runs of these kinds only look at nodes, so they do not make a node PENDING or UPDATING. */
const observing = ['check'];

/**
 * The node lags `role`: the role has a notified commit, and the node's recorded commit for it is not that
 * commit. A notification may carry an abbreviated commit, so a recorded full commit matches by prefix.
 * (Per node and role, for one role's count; whole-fleet status uses the set-based table below.)
 */
export function behindCondition(role: string | SQL): SQL {
	return sql`exists (select 1 from code_roles cr where cr.name = ${role} and cr.latest_commit is not null
		and not exists (select 1 from node_code_versions v where v.node_id = ${nodes.id} and v.role = cr.name
			and left(v.commit, length(cr.latest_commit)) = cr.latest_commit))`;
}

const activeTasks = (state: 'running' | 'queued') =>
	sql.raw(`(select distinct t.node_id from tasks t
		join runs r on r.id = t.run_id
		where t.state = '${state}' and r.state in ('queued', 'running', 'paused') and r.kind not in (${observing.map((k) => `'${k}'`).join(', ')}))`);

/**
 * Every node's status in one set-based pass (hash joins over the whole fleet, tens of milliseconds for
 * 10,000 nodes, where a per-row subquery took seconds on PostgreSQL). Join it as `ns` on `ns.node_id`:
 *
 * - `wanted`: the node's roles that have a notified commit; `current`: those it runs the latest of.
 */
export const fleetStatusTable = sql`(select n.id as node_id, (case
		when rt.node_id is not null then 'UPDATING'
		when qt.node_id is not null then 'PENDING'
		when n.reachable = false or n.host_key_status = 'changed' then 'UNREACHABLE'
		when coalesce(vs.failed, false) then 'FAILED'
		when coalesce(nr.wanted, 0) > coalesce(vs.current, 0) then 'OUTDATED'
		else 'UP_TO_DATE' end) as status
	from nodes n
	left join ${activeTasks('running')} rt on rt.node_id = n.id
	left join ${activeTasks('queued')} qt on qt.node_id = n.id
	left join (select v.node_id,
			bool_or(v.last_error is not null) as failed,
			count(*) filter (where cr.latest_commit is not null
				and left(v.commit, length(cr.latest_commit)) = cr.latest_commit) as current
		from node_code_versions v
		join nodes vn on vn.id = v.node_id and v.role = any(vn.roles)
		left join code_roles cr on cr.name = v.role
		group by v.node_id) vs on vs.node_id = n.id
	left join (select rn.id, count(*) as wanted
		from nodes rn cross join lateral unnest(rn.roles) as nr(role)
		join code_roles cr on cr.name = nr.role and cr.latest_commit is not null
		group by rn.id) nr on nr.id = n.id) ns`;

/** The status column of `fleetStatusTable`: only valid in a query that joins it. */
export const fleetStatusSql: SQL<FleetStatus> = sql<FleetStatus>`ns.status`;
export const fleetStatusJoin = sql`ns.node_id = ${nodes.id}`;

export function statusIs(status: FleetStatus): SQL {
	return sql`${fleetStatusSql} = ${status}`;
}

/** Counts of nodes by status (every status present, zero when none). */
export async function countByStatus(where?: SQL): Promise<Record<FleetStatus, number>> {
	const rows = await db()
		.select({ status: fleetStatusSql, count: sql<number>`count(*)::int` })
		.from(nodes)
		.innerJoin(fleetStatusTable, fleetStatusJoin)
		.where(where)
		.groupBy(sql`1`);
	const counts = Object.fromEntries(fleetStatuses.map((s) => [s, 0])) as Record<FleetStatus, number>;
	for (const r of rows) counts[r.status] = Number(r.count);
	return counts;
}

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

/** One node's status, for pages and checks that need just one. */
export async function statusOf(nodeId: string): Promise<FleetStatus | undefined> {
	const [row] = await db()
		.select({ status: fleetStatusSql })
		.from(nodes)
		.innerJoin(fleetStatusTable, fleetStatusJoin)
		.where(eq(nodes.id, nodeId));
	return row?.status;
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
