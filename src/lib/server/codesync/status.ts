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
const observingKinds = ['check'];

const observing = sql.raw(observingKinds.map((k) => `'${k}'`).join(', '));

function activeTask(state: 'running' | 'queued'): SQL {
	return sql`exists (select 1 from tasks t join runs r on r.id = t.run_id
		where t.node_id = ${nodes.id} and t.state = ${state}
		and r.state in ('queued', 'running', 'paused') and r.kind not in (${observing}))`;
}

/**
 * The node lags `role`: the role has a notified commit, and the node's recorded commit for it is not that
 * commit. A notification may carry an abbreviated commit, so a recorded full commit matches by prefix.
 */
export function behindCondition(role: string | SQL): SQL {
	return sql`exists (select 1 from code_roles cr where cr.name = ${role} and cr.latest_commit is not null
		and not exists (select 1 from node_code_versions v where v.node_id = ${nodes.id} and v.role = cr.name
			and left(v.commit, length(cr.latest_commit)) = cr.latest_commit))`;
}

const anyRoleBehind = sql`exists (select 1 from unnest(${nodes.roles}) as nr(role) where ${behindCondition(sql`nr.role`)})`;

const anyRoleFailed = sql`exists (select 1 from node_code_versions v
	where v.node_id = ${nodes.id} and v.last_error is not null and v.role = any(${nodes.roles}))`;

export const fleetStatusSql: SQL<FleetStatus> = sql<FleetStatus>`(case
	when ${activeTask('running')} then 'UPDATING'
	when ${activeTask('queued')} then 'PENDING'
	when ${nodes.reachable} = false or ${nodes.hostKeyStatus} = 'changed' then 'UNREACHABLE'
	when ${anyRoleFailed} then 'FAILED'
	when ${anyRoleBehind} then 'OUTDATED'
	else 'UP_TO_DATE' end)`;

export function statusIs(status: FleetStatus): SQL {
	return sql`${fleetStatusSql} = ${status}`;
}

/** Counts of nodes by status (every status present, zero when none). */
export async function countByStatus(where?: SQL): Promise<Record<FleetStatus, number>> {
	const rows = await db()
		.select({ status: fleetStatusSql, count: sql<number>`count(*)::int` })
		.from(nodes)
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
	const [row] = await db().select({ status: fleetStatusSql }).from(nodes).where(eq(nodes.id, nodeId));
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
