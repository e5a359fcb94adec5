import { randomUUID } from 'node:crypto';
import type { Actor } from '$lib/server/audit';
import { recordAudit } from '$lib/server/audit';
import { schedulePeriodic } from '$lib/server/engine';
import { getChannel } from './channels';
import { enqueue, resendLostDeliveries, startDeliveries, type DeliverySettings } from './deliver';
import { registerNotifyMetrics } from './metrics';
import { EventWatcher, watchConditions } from './watch';

let watcher: EventWatcher | undefined;

/** The notifications' part of the console that exists before the engine starts: its gauges on /metrics. */
export function registerNotify(): void {
	registerNotifyMetrics();
}

/**
 * Starts the notifications on this console once the engine runs: its share of the delivery queue, the
 * follower of engine events, and (shared by every console) the watch of conditions. Nothing here is on a
 * run's path: events are read after they are written, and deliveries go through their own queue.
 */
export async function startNotify(s: Partial<DeliverySettings> & { watchSeconds?: number } = {}): Promise<void> {
	await startDeliveries(s);
	watcher = new EventWatcher();
	watcher.start();
	await schedulePeriodic('notify-watch', s.watchSeconds ?? 60, async () => ({
		...(await watchConditions()),
		resent: await resendLostDeliveries()
	}));
}

export async function stopNotify(): Promise<void> {
	await watcher?.stop();
	watcher = undefined;
}

/** Queues a test message to one channel; it shows among the channel's deliveries like any other. */
export async function sendTest(actor: Actor, channelId: string): Promise<string> {
	const channel = await getChannel(channelId);
	const key = `test:${randomUUID()}`;
	const [id] = await enqueue(
		{
			kind: 'test',
			key,
			at: new Date().toISOString(),
			title: 'Test notification from Flotilla',
			text: `Sent by ${actor.name} to check the channel ${channel.name}.`,
			path: '/settings/notifications',
			data: { test: true }
		},
		[channel]
	);
	await recordAudit(actor, {
		action: 'notify.channel.test',
		targetType: 'notify_channel',
		targetId: channelId,
		details: { delivery_id: id }
	});
	return id!;
}
