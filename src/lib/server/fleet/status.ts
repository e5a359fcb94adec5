import { eq, sql, type SQL } from 'drizzle-orm';
import { fleetStatuses, type FleetStatus } from '$lib/schemas/nodes';
import { db, queryRows } from '$lib/server/db';
import { nodes } from '$lib/server/db/schema';
import { nodesWithActiveTasks } from '$lib/server/engine';

/**
 * A node's status on the Fleet Overview, derived in SQL from what the database knows, so that filtering,
 * counting and paging happen in the database for fleets of thousands. The fleet knows the first three; every
 * domain adds its own (Code Sync: FAILED, OUTDATED) with `registerStatusPart`, from its own folder. In order
 * of precedence:
 *
 * - UPDATING: a task of a run that changes nodes is running on it (the engine says which);
 * - PENDING: such a run has a task for it waiting its turn;
 * - UNREACHABLE: the last contact failed, or its host key changed (nothing can be done to it until an
 *   admin looks);
 * - then each domain's parts, lowest precedence first;
 * - UP_TO_DATE: otherwise.
 */
export { fleetStatuses, type FleetStatus };

export interface StatusPart {
	status: FleetStatus;
	/** Tells apart two domains' parts of the same status (default: the status). */
	name?: string;
	/** Lower wins when a node is in several parts. The fleet's own are 10, 20 and 30. */
	precedence: number;
	/** A subquery `(node_id)` of the nodes in this status, each node at most once, over the whole fleet. */
	nodes(): SQL;
}

const fleetParts: StatusPart[] = [
	{ status: 'UPDATING', precedence: 10, nodes: () => nodesWithActiveTasks('running') },
	{ status: 'PENDING', precedence: 20, nodes: () => nodesWithActiveTasks('queued') },
	{
		status: 'UNREACHABLE',
		precedence: 30,
		nodes: () => sql`(select id as node_id from ${nodes} where reachable = false or host_key_status = 'changed')`
	}
];
const domainParts = new Map<string, StatusPart>();

/** A domain's part of the fleet status (registered again under its name, it replaces the earlier one). */
export function registerStatusPart(part: StatusPart): void {
	domainParts.set(part.name ?? part.status, part);
}

/**
 * Besides its one status, a node carries alerts that domains raise (System Updates: security updates pending, a
 * reboot required): each is a set-based subquery `(node_id)` over the whole fleet, as a status part is.
 */
export interface StatusAlert {
	/** snake_case, as the API shows it. */
	alert: string;
	nodes(): SQL;
}
const alerts = new Map<string, StatusAlert>();

/** A domain's alert on nodes (registered again, it replaces the earlier one). */
export function registerStatusAlert(alert: StatusAlert): void {
	alerts.set(alert.alert, alert);
}

/** Per node, the alerts raised on it (nodes without any are absent). */
export async function alertsFor(nodeIds: string[]): Promise<Map<string, string[]>> {
	const out = new Map<string, string[]>();
	if (!nodeIds.length || !alerts.size) return out;
	const ids = sql.join(
		nodeIds.map((id) => sql`${id}::uuid`),
		sql`, `
	);
	const parts = [...alerts.values()].map(
		(a) => sql`select a.node_id, ${a.alert}::text as alert from ${a.nodes()} a where a.node_id in (${ids})`
	);
	const rows = await queryRows<{ node_id: string; alert: string }>(sql.join(parts, sql` union all `));
	for (const r of rows) {
		out.set(r.node_id, [...(out.get(r.node_id) ?? []), r.alert].sort());
	}
	return out;
}

/**
 * Besides the status, a domain can say how the console hears from a node that it does not reach over SSH (the
 * pull agent: its last poll and version), shown under the node's status on the Fleet Overview. Asked per page of
 * nodes, not over the whole fleet.
 */
export interface StatusNote {
	/** Said before the time, e.g. "pull agent 1.0.0 · last poll". */
	text: string;
	/** When; null for never (the page says "never"). */
	at: Date | null;
}
export interface StatusNotes {
	name: string;
	notesFor(nodeIds: string[]): Promise<Map<string, StatusNote>>;
}
const notes = new Map<string, StatusNotes>();

/** A domain's notes on nodes (registered again under its name, it replaces the earlier one). */
export function registerStatusNotes(source: StatusNotes): void {
	notes.set(source.name, source);
}

/** Per node, the notes domains have on it, in the order they registered (nodes without any are absent). */
export async function notesFor(nodeIds: string[]): Promise<Map<string, StatusNote[]>> {
	const out = new Map<string, StatusNote[]>();
	if (!nodeIds.length) return out;
	for (const source of await Promise.all([...notes.values()].map((n) => n.notesFor(nodeIds)))) {
		for (const [id, note] of source) out.set(id, [...(out.get(id) ?? []), note]);
	}
	return out;
}

/**
 * Every node's status in one set-based pass: each part is one hash join over the whole fleet (tens of
 * milliseconds for 10,000 nodes, where a per-row subquery took seconds on PostgreSQL). Join it as `ns` on
 * `ns.node_id` (`fleetStatusJoin`).
 */
export function fleetStatusTable(): SQL {
	const parts = [...fleetParts, ...domainParts.values()].sort((a, b) => a.precedence - b.precedence);
	const alias = (i: number) => sql.identifier(`p${i}`);
	const cases = parts.map((p, i) => sql`when ${alias(i)}.node_id is not null then ${p.status}::text`);
	const joins = parts.map((p, i) => sql`left join ${p.nodes()} ${alias(i)} on ${alias(i)}.node_id = n.id`);
	return sql`(select n.id as node_id, (case ${sql.join(cases, sql` `)} else 'UP_TO_DATE' end) as status
		from ${nodes} n ${sql.join(joins, sql` `)}) ns`;
}

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
		.innerJoin(fleetStatusTable(), fleetStatusJoin)
		.where(where)
		.groupBy(sql`1`);
	const counts = Object.fromEntries(fleetStatuses.map((s) => [s, 0])) as Record<FleetStatus, number>;
	for (const r of rows) counts[r.status] = Number(r.count);
	return counts;
}

/** One node's status, for pages and checks that need just one. */
export async function statusOf(nodeId: string): Promise<FleetStatus | undefined> {
	const [row] = await db()
		.select({ status: fleetStatusSql })
		.from(nodes)
		.innerJoin(fleetStatusTable(), fleetStatusJoin)
		.where(eq(nodes.id, nodeId));
	return row?.status;
}
