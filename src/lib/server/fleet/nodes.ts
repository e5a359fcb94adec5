import { and, asc, desc, eq, getTableColumns, gt, ilike, isNull, lt, or, sql, type SQL } from 'drizzle-orm';
import type { z } from 'zod';
import {
	fleetStatuses,
	type connectionStatuses,
	type createNodeSchema,
	type nodeQuerySchema,
	type nodeSortKeys,
	type updateNodeSchema
} from '$lib/schemas/nodes';
import { recordAudit, type Actor } from '$lib/server/audit';
import { fleetStatusJoin, fleetStatusSql, fleetStatusTable, statusIs, type FleetStatus } from './status';
import { db } from '$lib/server/db';
import { nodesWithHistory } from '$lib/server/engine';
import { credentials, nodes, type Node } from '$lib/server/db/schema';
import { notFound, ServiceError } from '$lib/server/errors';

export type ConnectionStatus = (typeof connectionStatuses)[number];

/** Whether the console can talk to the node, from what the last check found. */
export function connectionStatus(node: Pick<Node, 'hostKeyStatus' | 'reachable'>): ConnectionStatus {
	if (node.hostKeyStatus === 'changed') return 'host_key_changed';
	if (node.reachable === false) return 'unreachable';
	if (node.hostKeyStatus === 'unknown') return node.reachable ? 'host_key_unknown' : 'unchecked';
	return node.reachable ? 'reachable' : 'unchecked';
}

async function assertReferences(input: { credential_id?: string; jump_node_id?: string | null }, selfId?: string) {
	if (input.credential_id) {
		const [c] = await db()
			.select({ id: credentials.id })
			.from(credentials)
			.where(eq(credentials.id, input.credential_id));
		if (!c) throw new ServiceError('validation_failed', 'No such credential', { credential_id: 'no such credential' });
	}
	if (input.jump_node_id) {
		if (input.jump_node_id === selfId) {
			throw new ServiceError('validation_failed', 'A node cannot be its own bastion', { jump_node_id: 'is this node' });
		}
		const [j] = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.id, input.jump_node_id));
		if (!j) throw new ServiceError('validation_failed', 'No such bastion node', { jump_node_id: 'no such node' });
	}
}

const nameTaken = (name: string) =>
	new ServiceError('conflict', `A node named ${name} exists`, { name: 'already taken' });

/** The row a validated node becomes; the one place both `createNode` and the inventory import write from. */
export function newNodeRow(input: z.infer<typeof createNodeSchema>): typeof nodes.$inferInsert {
	return {
		name: input.name,
		host: input.host,
		port: input.port,
		username: input.user,
		credentialId: input.credential_id,
		jumpNodeId: input.jump_node_id ?? null,
		kind: input.kind,
		roles: [...new Set(input.roles)],
		labels: input.labels,
		policy: input.policy,
		controlPlane: input.control_plane,
		// A fingerprint given at import (from the operator's own known_hosts) is pinned at once.
		hostKeyFingerprint: input.host_key_fingerprint ?? null,
		hostKeyStatus: input.host_key_fingerprint ? 'pinned' : 'unknown'
	};
}

export async function createNode(actor: Actor, input: z.infer<typeof createNodeSchema>): Promise<Node> {
	await assertReferences(input);
	const [row] = await db()
		.insert(nodes)
		.values(newNodeRow(input))
		.onConflictDoNothing({ target: nodes.name })
		.returning();
	if (!row) throw nameTaken(input.name);
	await recordAudit(actor, {
		action: 'node.create',
		targetType: 'node',
		targetId: row.id,
		details: { name: row.name, host: row.host, port: row.port, pinned: row.hostKeyFingerprint }
	});
	return row;
}

/** Every role named on some node, defined or not (a role named before it is defined is still worth a filter). */
export async function rolesOnNodes(): Promise<string[]> {
	const rows = await db()
		.selectDistinct({ role: sql<string>`unnest(${nodes.roles})` })
		.from(nodes);
	return rows.map((r) => r.role);
}

export async function getNode(id: string): Promise<Node> {
	const [row] = await db().select().from(nodes).where(eq(nodes.id, id));
	if (!row) throw notFound('Node');
	return row;
}

export type NodeWithStatus = Node & { status: FleetStatus };

export async function listNodes(
	q: Omit<z.infer<typeof nodeQuerySchema>, 'limit'> & { limit?: number }
): Promise<{ items: NodeWithStatus[]; nextCursor: string | null }> {
	const limit = q.limit ?? 50;
	const where: SQL[] = [];
	if (q.q) {
		const like = `%${q.q.replace(/[%_\\]/g, '\\$&')}%`;
		where.push(or(ilike(nodes.name, like), ilike(nodes.host, like))!);
	}
	if (q.role) where.push(sql`${q.role} = any(${nodes.roles})`);
	if (q.label) {
		const [k, ...v] = q.label.split('=');
		where.push(sql`${nodes.labels} ->> ${k!} = ${v.join('=')}`);
	}
	if (q.connection) where.push(statusCondition(q.connection));
	if (q.status) where.push(statusIs(q.status));
	const [column, descending] = q.sort?.startsWith('-') ? [q.sort.slice(1), true] : [q.sort ?? 'name', false];
	const key = column === 'name' ? null : sortKey(column as Exclude<(typeof nodeSortKeys)[number], 'name'>);
	const after = q.cursor === undefined ? null : readCursor(q.cursor, key !== null);
	if (after) {
		// Keyset paging: the rows after the last one shown, in the same order, with the name breaking ties.
		if (!key) where.push((descending ? lt : gt)(nodes.name, after.name));
		else where.push(sql`(${key}, ${nodes.name}) ${sql.raw(descending ? '<' : '>')} (${after.key}, ${after.name})`);
	}
	const order = descending ? desc : asc;
	const rows = await db()
		.select({ ...getTableColumns(nodes), status: fleetStatusSql, sortKey: key ?? sql<null>`null` })
		.from(nodes)
		.innerJoin(fleetStatusTable(), fleetStatusJoin)
		.where(and(...where))
		.orderBy(...(key ? [order(key), order(nodes.name)] : [order(nodes.name)]))
		.limit(limit + 1);
	const items = rows.slice(0, limit).map(({ sortKey: _, ...node }) => node);
	const last = rows.length > limit ? rows[limit - 1]! : null;
	let nextCursor: string | null = null;
	if (last) nextCursor = key ? writeCursor(last.sortKey as string, last.name) : last.name;
	return { items, nextCursor };
}

/**
 * Each sortable column but the name as one text value, so that paging compares it with the name as a row: the
 * port padded so that 22 comes before 2222, the status in the order of the overview's cards, a node never seen
 * first (ascending).
 */
function sortKey(column: Exclude<(typeof nodeSortKeys)[number], 'name'>): SQL<string> {
	switch (column) {
		case 'address':
			return sql<string>`(${nodes.host} || ':' || lpad(${nodes.port}::text, 5, '0'))`;
		case 'status': {
			const order = sql.join(
				fleetStatuses.map((s) => sql`${s}::text`),
				sql`, `
			);
			return sql<string>`lpad(array_position(array[${order}], ${fleetStatusSql})::text, 2, '0')`;
		}
		case 'last_seen':
			return sql<string>`coalesce(to_char(${nodes.lastSeenAt} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '')`;
	}
}

/** A cursor of a sort by name is the last name (as it always was); of another sort, its key and name encoded. */
function writeCursor(key: string, name: string): string {
	return Buffer.from(JSON.stringify([key, name])).toString('base64url');
}

function readCursor(cursor: string, keyed: boolean): { key: string; name: string } | null {
	if (!keyed) return { key: '', name: cursor };
	try {
		const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString());
		if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) {
			return { key: value[0] as string, name: value[1] as string };
		}
	} catch {
		// Not JSON: refused below like any other cursor of another sort.
	}
	throw new ServiceError('validation_failed', 'The cursor is not one of this sort', {
		cursor: 'is not a next_cursor of a list in this sort'
	});
}

/** `connectionStatus` as SQL, so that filtering happens in the database (fleets of thousands). */
function statusCondition(status: ConnectionStatus): SQL {
	switch (status) {
		case 'host_key_changed':
			return eq(nodes.hostKeyStatus, 'changed');
		case 'unreachable':
			return and(sql`${nodes.hostKeyStatus} <> 'changed'`, eq(nodes.reachable, false))!;
		case 'host_key_unknown':
			return and(eq(nodes.hostKeyStatus, 'unknown'), eq(nodes.reachable, true))!;
		case 'reachable':
			return and(eq(nodes.hostKeyStatus, 'pinned'), eq(nodes.reachable, true))!;
		case 'unchecked':
			return and(sql`${nodes.hostKeyStatus} <> 'changed'`, isNull(nodes.reachable))!;
	}
}

export async function updateNode(actor: Actor, id: string, changes: z.infer<typeof updateNodeSchema>): Promise<Node> {
	await getNode(id);
	await assertReferences(changes, id);
	const [row] = await db()
		.update(nodes)
		.set({
			name: changes.name,
			host: changes.host,
			port: changes.port,
			username: changes.user,
			credentialId: changes.credential_id,
			jumpNodeId: changes.jump_node_id,
			kind: changes.kind,
			roles: changes.roles ? [...new Set(changes.roles)] : undefined,
			labels: changes.labels,
			policy: changes.policy,
			controlPlane: changes.control_plane,
			updatedAt: new Date()
		})
		.where(eq(nodes.id, id))
		.returning()
		.catch((err: unknown) => {
			if (changes.name && /unique|duplicate/i.test(String((err as Error).cause ?? err))) throw nameTaken(changes.name);
			throw err;
		});
	await recordAudit(actor, { action: 'node.update', targetType: 'node', targetId: id, details: changes });
	return row!;
}

/**
 * Removes a node. `typedName`, when the caller asks for it (the console's pages), must be the node's name if some
 * run had a task on it: its history leaves the node's page with it, so a slip of the mouse is not enough.
 */
export async function deleteNode(actor: Actor, id: string, confirm?: { typedName: string | undefined }): Promise<void> {
	if (confirm) {
		const node = await getNode(id);
		if ((await nodesWithHistory([id])).has(id) && confirm.typedName?.trim() !== node.name) {
			throw new ServiceError('validation_failed', `${node.name} has run history: type its name to remove it`, {
				confirm_name: `must be ${node.name}`
			});
		}
	}
	const gone = await db().delete(nodes).where(eq(nodes.id, id)).returning({ id: nodes.id });
	if (!gone.length) throw notFound('Node');
	await recordAudit(actor, { action: 'node.delete', targetType: 'node', targetId: id });
}
