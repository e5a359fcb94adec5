import { and, inArray, isNotNull, lt, notInArray, sql } from 'drizzle-orm';
import type { NotifyEventKind } from '$lib/schemas/notify';
import { db } from '$lib/server/db';
import { certificates, codeRoles, nodes, notifyConditions, type NotifyChannel } from '$lib/server/db/schema';
import { eventStream, lastEventId, runNumbers, type EngineEvent } from '$lib/server/engine';
import { alertsFor } from '$lib/server/fleet/status';
import { log, loggableError } from '$lib/server/log';
import { channelsFor } from './channels';
import { enqueue } from './deliver';
import type { Notification } from './messages';
import { advanceEventCursor, readEventCursor } from './settings';

const WATCHED_TYPES = ['run.state', 'rollout.state'];
const FINISHED_ROLLOUT = ['completed', 'cancelled', 'rolled_back', 'failed'];
const RESTART_MS = 2_000;

/** What an engine event means to the people watching, if anything. */
export async function notificationOf(e: EngineEvent): Promise<Notification | undefined> {
	const at = e.at;
	const key = `event:${e.id}`;
	if (e.type === 'run.state' && e.run_id) {
		const number = (await runNumbers([e.run_id])).get(e.run_id);
		const reason = typeof e.data.reason === 'string' ? e.data.reason : null;
		const path = `/runs/${e.run_id}`;
		const data = { run_id: e.run_id, run_number: number ?? null, state: e.data.state, reason };
		if (e.data.state === 'failed' && e.data.ended) {
			return {
				kind: 'run.failed',
				key,
				at,
				title: `Run #${number} failed`,
				text: reason ?? 'The run failed.',
				path,
				data
			};
		}
		if (e.data.state === 'paused' && reason) {
			return {
				kind: 'run.needs_attention',
				key,
				at,
				title: `Run #${number} is paused and needs attention`,
				text: reason,
				path,
				data
			};
		}
	}
	if (e.type === 'rollout.state') {
		const state = String(e.data.state);
		const number = e.data.number;
		const reason = typeof e.data.reason === 'string' ? e.data.reason : null;
		const data = { rollout_id: e.data.rollout_id, rollout_number: number, state, reason, stage: e.data.stage ?? null };
		const path = `/rollouts/${String(e.data.rollout_id)}`;
		if (state === 'paused') {
			return {
				kind: 'rollout.paused',
				key,
				at,
				title: `Rollout #${number} paused`,
				text: reason ?? 'Paused.',
				path,
				data
			};
		}
		if (FINISHED_ROLLOUT.includes(state)) {
			const words = state.replace('_', ' ');
			return {
				kind: 'rollout.finished',
				key,
				at,
				title: `Rollout #${number} ${words}`,
				text: reason ?? `The rollout ${words}.`,
				path,
				data
			};
		}
	}
	return undefined;
}

/**
 * Follows the engine's events from where the notifications last got to (kept in the database, so an event
 * that happened while every console was down is still sent) and queues what each means. Every console runs
 * one; the deliveries' unique key makes them send each event once.
 */
export class EventWatcher {
	private readonly abort = new AbortController();
	private running: Promise<void> | undefined;

	start(): void {
		this.running = this.loop();
	}

	async stop(): Promise<void> {
		this.abort.abort();
		await this.running;
	}

	private async loop(): Promise<void> {
		while (!this.abort.signal.aborted) {
			try {
				await this.follow();
			} catch (err) {
				if (!this.abort.signal.aborted) log.warn({ err: loggableError(err) }, 'notifications: following events failed');
			}
			if (!this.abort.signal.aborted) await new Promise((r) => setTimeout(r, RESTART_MS));
		}
	}

	private async follow(): Promise<void> {
		let after = await readEventCursor();
		if (after === null) {
			after = await lastEventId();
			await advanceEventCursor(after);
		}
		const reader = eventStream({ after, types: WATCHED_TYPES, signal: this.abort.signal }).getReader();
		const decoder = new TextDecoder();
		let pending = '';
		try {
			for (;;) {
				const { value, done } = await reader.read();
				if (done) return;
				pending += decoder.decode(value, { stream: true });
				const frames = pending.split('\n\n');
				pending = frames.pop() ?? '';
				let last = 0;
				for (const frame of frames) {
					const data = frame.split('\n').find((l) => l.startsWith('data: '));
					if (!data) continue;
					const event = JSON.parse(data.slice(6)) as EngineEvent;
					await queueEvent(event);
					last = event.id;
				}
				if (last) await advanceEventCursor(last);
			}
		} finally {
			reader.releaseLock();
		}
	}
}

async function queueEvent(e: EngineEvent): Promise<void> {
	const n = await notificationOf(e);
	if (n && n.kind !== 'test') await enqueue(n, await channelsFor(n.kind));
}

interface Condition {
	kind: NotifyEventKind;
	subject: string;
	title: string;
	text: string;
	path?: string;
	data: Record<string, unknown>;
}

const DAY_MS = 86_400_000;

/** How long a condition must last before a channel hears of it (its "past N" rules); others are told at once. */
function dueAfterMs(kind: NotifyEventKind, c: NotifyChannel): number {
	if (kind === 'security_updates.pending') return c.thresholds.securityDays * DAY_MS;
	if (kind === 'reboot.required') return c.thresholds.rebootDays * DAY_MS;
	if (kind === 'node.unreachable') return c.thresholds.unreachableMinutes * 60_000;
	return 0;
}

/** The watched conditions that hold now, each under a stable key. */
async function currentConditions(now: Date): Promise<Condition[]> {
	const out: Condition[] = [];
	const fleet = await db()
		.select({
			id: nodes.id,
			name: nodes.name,
			reachable: nodes.reachable,
			hostKeyStatus: nodes.hostKeyStatus,
			lastError: nodes.lastError
		})
		.from(nodes);
	const alerts = await alertsFor(fleet.map((n) => n.id));
	for (const n of fleet) {
		const path = `/nodes/${n.id}`;
		const data = { node_id: n.id, node: n.name };
		if (n.hostKeyStatus === 'changed') {
			out.push({
				kind: 'host_key.changed',
				subject: n.id,
				title: `Host key of ${n.name} changed`,
				text: 'Nothing is done to the node until an admin accepts or rejects the new key.',
				path,
				data
			});
		}
		if (n.reachable === false) {
			out.push({
				kind: 'node.unreachable',
				subject: n.id,
				title: `${n.name} is unreachable`,
				text: n.lastError ?? 'The last contact failed.',
				path,
				data
			});
		}
		const raised = alerts.get(n.id) ?? [];
		if (raised.includes('security_updates')) {
			out.push({
				kind: 'security_updates.pending',
				subject: n.id,
				title: `Security updates pending on ${n.name}`,
				text: 'Security updates are waiting to be applied.',
				path,
				data
			});
		}
		if (raised.includes('reboot_required')) {
			out.push({
				kind: 'reboot.required',
				subject: n.id,
				title: `${n.name} needs a reboot`,
				text: 'Updates installed on the node take effect after a reboot.',
				path,
				data
			});
		}
	}
	const soon = new Date(now.getTime() + 30 * DAY_MS);
	const certs = await db()
		.select({
			id: certificates.id,
			subject: certificates.subject,
			location: certificates.location,
			notAfter: certificates.notAfter,
			nodeId: certificates.nodeId
		})
		.from(certificates)
		.where(and(isNotNull(certificates.notAfter), lt(certificates.notAfter, soon)));
	for (const c of certs) {
		const left = c.notAfter!.getTime() - now.getTime();
		const kind: NotifyEventKind =
			left <= 0 ? 'certificate.expired' : left <= 7 * DAY_MS ? 'certificate.expiring_7' : 'certificate.expiring_30';
		const name = c.subject ?? c.location;
		out.push({
			kind,
			// The date is part of the subject: a renewed certificate expiring again is news again.
			subject: `${c.id}:${c.notAfter!.toISOString()}`,
			title:
				left <= 0 ? `Certificate ${name} expired` : `Certificate ${name} expires in ${Math.ceil(left / DAY_MS)} days`,
			text: `${c.location}, valid until ${c.notAfter!.toISOString()}`,
			path: '/certificates',
			data: { certificate_id: c.id, node_id: c.nodeId, not_after: c.notAfter!.toISOString() }
		});
	}
	const roles = await db()
		.select({ name: codeRoles.name, reason: codeRoles.autoUpdateDisabledReason })
		.from(codeRoles)
		.where(isNotNull(codeRoles.autoUpdateDisabledReason));
	for (const r of roles) {
		out.push({
			kind: 'auto_update.disabled',
			subject: r.name,
			title: `Auto-update of ${r.name} turned itself off`,
			text: r.reason ?? '',
			path: '/code-sync',
			data: { role: r.name }
		});
	}
	return out;
}

/**
 * One turn of the conditions watch (a periodic job): remembers when each condition began, forgets the ones
 * that ended, and queues a notification to each channel whose threshold the condition has now outlasted. The
 * key holds when the condition began, so it is sent once per occurrence.
 */
export async function watchConditions(now = new Date()): Promise<{ conditions: number; queued: number }> {
	const conditions = await currentConditions(now);
	const keyOf = (c: Condition) => `${c.kind}:${c.subject}`;
	const keys = conditions.map(keyOf);
	await db().transaction(async (tx) => {
		await tx.delete(notifyConditions).where(keys.length ? notInArray(notifyConditions.key, keys) : sql`true`);
		if (keys.length) {
			await tx
				.insert(notifyConditions)
				.values(keys.map((key) => ({ key, since: now })))
				.onConflictDoNothing();
		}
	});
	const since = new Map(
		keys.length
			? (await db().select().from(notifyConditions).where(inArray(notifyConditions.key, keys))).map((r) => [
					r.key,
					r.since
				])
			: []
	);
	let queued = 0;
	const byKind = Map.groupBy(conditions, (c) => c.kind);
	for (const [kind, list] of byKind) {
		const channels = await channelsFor(kind);
		if (!channels.length) continue;
		for (const c of list) {
			const began = since.get(keyOf(c)) ?? now;
			const due = channels.filter((ch) => now.getTime() - began.getTime() >= dueAfterMs(kind, ch));
			if (!due.length) continue;
			const n: Notification = {
				kind,
				key: `${keyOf(c)}@${began.toISOString()}`,
				at: now.toISOString(),
				title: c.title,
				text: c.text,
				path: c.path,
				data: { ...c.data, since: began.toISOString() }
			};
			queued += (await enqueue(n, due)).length;
		}
	}
	return { conditions: conditions.length, queued };
}
