import { and, eq, lt, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { notifyDeliveries, type NotifyChannel } from '$lib/server/db/schema';
import { sendJob, workQueue } from '$lib/server/engine';
import { postTo, resolveTarget, TargetRefused } from '$lib/server/http/outbound';
import { log, loggableError } from '$lib/server/log';
import { getChannel, openChannel } from './channels';
import { slackBody, webhookBody, type Notification } from './messages';
import { readNotifySettings } from './settings';
import { SIGNATURE_HEADER, signBody } from './sign';

const QUEUE = 'notify-deliveries';

export interface DeliverySettings {
	/** A receiver gets this long to answer each attempt. */
	timeoutMs: number;
	/** Attempts after the first, waits growing from `retryDelaySeconds` to `retryDelayMaxSeconds`: about a day. */
	retryLimit: number;
	retryDelaySeconds: number;
	retryDelayMaxSeconds: number;
	retryBackoff: boolean;
	/** Deliveries this console sends at once. */
	concurrency: number;
	/** The console's address, for links in messages (the ORIGIN browsers use). */
	consoleUrl: string;
}

let settings: DeliverySettings = {
	timeoutMs: 10_000,
	retryLimit: 30,
	retryDelaySeconds: 30,
	retryDelayMaxSeconds: 3_600,
	retryBackoff: true,
	concurrency: 4,
	consoleUrl: ''
};

/** Joins this console to the delivery queue (every console takes a share of the deliveries). */
export async function startDeliveries(s: Partial<DeliverySettings>): Promise<void> {
	settings = { ...settings, ...s };
	await workQueue<{ deliveryId: string }>(
		QUEUE,
		{
			retryLimit: settings.retryLimit,
			retryDelaySeconds: settings.retryDelaySeconds,
			retryBackoff: settings.retryBackoff,
			retryDelayMaxSeconds: settings.retryDelayMaxSeconds,
			expireInSeconds: Math.max(60, Math.ceil((settings.timeoutMs * 3) / 1000)),
			concurrency: settings.concurrency
		},
		(job) => deliver(job.deliveryId)
	);
}

/**
 * Queues a notification for the channels given. The row per channel and occurrence is unique, so a console
 * that hears the same event as another adds nothing; the job's id is the row's, so it is sent once too.
 */
export async function enqueue(n: Notification, channels: NotifyChannel[]): Promise<string[]> {
	if (!channels.length) return [];
	const rows = await db()
		.insert(notifyDeliveries)
		.values(channels.map((c) => ({ channelId: c.id, eventKey: n.key, kind: n.kind, payload: { ...n } })))
		.onConflictDoNothing()
		.returning({ id: notifyDeliveries.id });
	for (const r of rows) await sendJob(QUEUE, { deliveryId: r.id }, r.id);
	return rows.map((r) => r.id);
}

/**
 * A queued delivery whose job was never sent (the console stopped between the row and the job) is sent now;
 * one whose job exists is not sent twice (same id).
 */
export async function resendLostDeliveries(): Promise<number> {
	const lost = await db()
		.select({ id: notifyDeliveries.id })
		.from(notifyDeliveries)
		.where(
			and(
				eq(notifyDeliveries.state, 'queued'),
				eq(notifyDeliveries.attempts, 0),
				lt(notifyDeliveries.createdAt, sql`now() - interval '2 minutes'`)
			)
		)
		.limit(500);
	let sent = 0;
	for (const r of lost) if (await sendJob(QUEUE, { deliveryId: r.id }, r.id)) sent++;
	return sent;
}

class RetryLater extends Error {}

/**
 * One attempt. It counts the attempt before sending, so that what the page shows is true even if the console
 * dies mid-request. A 2xx answer delivers; anything else is kept as the last response and retried (by throwing)
 * until the retries are spent, when the delivery is marked failed.
 */
async function deliver(deliveryId: string): Promise<void> {
	const [row] = await db()
		.update(notifyDeliveries)
		.set({ attempts: sql`${notifyDeliveries.attempts} + 1`, lastAttemptAt: new Date() })
		.where(and(eq(notifyDeliveries.id, deliveryId), eq(notifyDeliveries.state, 'queued')))
		.returning();
	if (!row) return;
	const channel = await getChannel(row.channelId).catch(() => undefined);
	if (!channel) return;
	const opened = openChannel(channel);
	const n = row.payload as unknown as Notification;
	const body =
		channel.kind === 'slack' ? slackBody(n, settings.consoleUrl) : webhookBody(n, row.id, settings.consoleUrl);
	const headers: Record<string, string> = { 'x-flotilla-delivery': row.id, 'x-flotilla-event': n.kind };
	if (opened.secret) headers[SIGNATURE_HEADER] = signBody(opened.secret, body);
	let status: number | null = null;
	let response: string;
	try {
		const { allowPrivateTargets } = await readNotifySettings();
		const target = await resolveTarget(opened.url, { allowPrivate: allowPrivateTargets });
		const answer = await postTo(target, body, headers, settings.timeoutMs);
		status = answer.status;
		response = answer.body;
	} catch (err) {
		response = err instanceof TargetRefused ? `refused: the target ${err.message}` : (err as Error).message;
	}
	const ok = status !== null && status >= 200 && status < 300;
	const spent = row.attempts > settings.retryLimit;
	await db()
		.update(notifyDeliveries)
		.set({
			lastStatus: status,
			lastResponse: response.slice(0, 2_048),
			...(ok ? { state: 'delivered' as const, deliveredAt: new Date() } : spent ? { state: 'failed' as const } : {})
		})
		.where(eq(notifyDeliveries.id, row.id));
	if (!ok && !spent) {
		log.debug({ deliveryId, status, err: loggableError(new Error(response)) }, 'notification delivery failed');
		throw new RetryLater(`delivery failed: ${status ?? response}`);
	}
}
