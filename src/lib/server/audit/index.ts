import type { RequestEvent } from '@sveltejs/kit';
import { and, desc, eq, gte, ilike, lt, lte, type SQL } from 'drizzle-orm';
import { db, type Database } from '$lib/server/db';
import { auditLog, type AuditResult, type AuditRow } from '$lib/server/db/schema';
import { log } from '$lib/server/log';

export interface Actor {
	id: string | null;
	name: string;
	via: string;
	ip: string | null;
}

export const systemActor: Actor = { id: null, name: 'system', via: 'system', ip: null };

export function clientIp(event: Pick<RequestEvent, 'getClientAddress'>): string | null {
	try {
		return event.getClientAddress();
	} catch {
		return null;
	}
}

/** The actor behind a request: its principal, or `anonymous` (failed sign-ins, set-up). */
export function actorOf(event: Pick<RequestEvent, 'locals' | 'getClientAddress'>, fallbackName = 'anonymous'): Actor {
	const p = event.locals.principal;
	const ip = clientIp(event);
	if (!p) return { id: null, name: fallbackName, via: 'anonymous', ip };
	// How an audit row names the channel the actor came through.
	return { id: p.user.id, name: p.user.username, via: p.via === 'token' ? `token:${p.tokenId}` : 'session', ip };
}

export interface AuditEntry {
	action: string;
	targetType?: string;
	targetId?: string | null;
	result?: AuditResult;
	details?: Record<string, unknown>;
}

/**
 * The one helper every mutating action calls. Give it the transaction of the change when there is one,
 * so that the change and its record commit or roll back together.
 */
export async function recordAudit(actor: Actor, entry: AuditEntry, executor: Database = db()): Promise<void> {
	await recordAudits(actor, [entry], executor);
}

/** Several audit rows in one insert (a bulk change records one row per thing it changed). */
export async function recordAudits(actor: Actor, entries: AuditEntry[], executor: Database = db()): Promise<void> {
	if (!entries.length) return;
	await executor.insert(auditLog).values(
		entries.map((entry) => ({
			actorId: actor.id,
			actorName: actor.name,
			via: actor.via,
			sourceIp: actor.ip,
			action: entry.action,
			targetType: entry.targetType ?? null,
			targetId: entry.targetId ?? null,
			result: entry.result ?? 'ok',
			details: entry.details ?? {}
		}))
	);
	if (entries.length === 1) {
		log.info({ audit: { ...entries[0], actor: actor.name, via: actor.via, ip: actor.ip } }, 'audit');
	} else {
		const actions = [...new Set(entries.map((e) => e.action))];
		log.info({ audit: { actions, rows: entries.length, actor: actor.name, via: actor.via, ip: actor.ip } }, 'audit');
	}
}

export interface AuditQuery {
	actor?: string;
	action?: string;
	result?: AuditResult;
	since?: Date;
	until?: Date;
	/** The id of the last row of the previous page. */
	cursor?: number;
	limit: number;
}

/**
 * Every row matching `q`, newest first, a page at a time from the database: an export of millions of rows
 * holds one page in memory, and the next is read only when the consumer asks for it.
 */
export async function* auditPages(q: Omit<AuditQuery, 'limit'>, pageSize = 1_000): AsyncGenerator<AuditRow[]> {
	let cursor = q.cursor;
	for (;;) {
		const page = await listAudit({ ...q, cursor, limit: pageSize });
		if (page.items.length) yield page.items;
		if (page.nextCursor === null) return;
		cursor = page.nextCursor;
	}
}

export async function listAudit(q: AuditQuery): Promise<{ items: AuditRow[]; nextCursor: number | null }> {
	const where: SQL[] = [];
	if (q.actor) where.push(eq(auditLog.actorName, q.actor));
	// Actions are dotted names (user.create, token.revoke): a prefix selects a family.
	if (q.action) where.push(ilike(auditLog.action, `${q.action.replace(/[%_\\]/g, '\\$&')}%`));
	if (q.result) where.push(eq(auditLog.result, q.result));
	if (q.since) where.push(gte(auditLog.at, q.since));
	if (q.until) where.push(lte(auditLog.at, q.until));
	if (q.cursor) where.push(lt(auditLog.id, q.cursor));
	const rows = await db()
		.select()
		.from(auditLog)
		.where(and(...where))
		.orderBy(desc(auditLog.id))
		.limit(q.limit + 1);
	const items = rows.slice(0, q.limit);
	return { items, nextCursor: rows.length > q.limit ? items[items.length - 1]!.id : null };
}
