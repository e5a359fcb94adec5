import { randomBytes } from 'node:crypto';
import { asc, desc, eq } from 'drizzle-orm';
import type { CreateChannelInput, NotifyEventKind } from '$lib/schemas/notify';
import { recordAudit, type Actor } from '$lib/server/audit';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { db } from '$lib/server/db';
import { notifyChannels, notifyDeliveries, type NotifyChannel, type NotifyDelivery } from '$lib/server/db/schema';
import { notFound, ServiceError } from '$lib/server/errors';
import { resolveTarget, TargetRefused } from '$lib/server/http/outbound';
import { readNotifySettings } from './settings';

const urlContext = (id: string) => `notify-channel:${id}:url`;
const secretContext = (id: string) => `notify-channel:${id}:secret`;

/** A channel with its secrets: only for delivering, never for an answer. */
export interface OpenedChannel {
	channel: NotifyChannel;
	url: string;
	secret: string | null;
}

/**
 * Adds a channel. Its URL is checked as a delivery would check it (scheme, and an address outside private
 * ranges unless allowed), so a mistyped or forbidden target is refused now, naming the field. A webhook
 * without a secret gets a generated one, returned once.
 */
export async function createChannel(
	actor: Actor,
	input: CreateChannelInput
): Promise<{ channel: NotifyChannel; secret: string | null }> {
	const { allowPrivateTargets } = await readNotifySettings();
	try {
		await resolveTarget(input.url, { allowPrivate: allowPrivateTargets });
	} catch (err) {
		if (err instanceof TargetRefused) {
			throw new ServiceError('validation_failed', 'The target URL is refused', { url: err.message });
		}
		throw err;
	}
	if (input.kind === 'slack' && input.secret) {
		throw new ServiceError('validation_failed', 'Slack channels are not signed', {
			secret: 'only webhooks have a secret'
		});
	}
	const secret = input.kind === 'webhook' ? (input.secret ?? randomBytes(24).toString('base64url')) : null;
	const id = crypto.randomUUID();
	const key = masterKey();
	const channel = await db().transaction(async (tx) => {
		const [taken] = await tx
			.select({ id: notifyChannels.id })
			.from(notifyChannels)
			.where(eq(notifyChannels.name, input.name));
		if (taken) throw new ServiceError('conflict', 'A channel of that name exists', { name: 'is taken' });
		const [row] = await tx
			.insert(notifyChannels)
			.values({
				id,
				name: input.name,
				kind: input.kind,
				sealedUrl: sealSecret(key, input.url, urlContext(id)),
				urlOrigin: new URL(input.url).origin,
				sealedSecret: secret ? sealSecret(key, secret, secretContext(id)) : null,
				events: [...new Set(input.events)],
				thresholds: {
					securityDays: input.security_days,
					rebootDays: input.reboot_days,
					unreachableMinutes: input.unreachable_minutes
				},
				enabled: input.enabled
			})
			.returning();
		await recordAudit(
			actor,
			{
				action: 'notify.channel.create',
				targetType: 'notify_channel',
				targetId: id,
				details: { name: input.name, kind: input.kind, origin: new URL(input.url).origin, events: input.events }
			},
			tx
		);
		return row!;
	});
	return { channel, secret };
}

export async function deleteChannel(actor: Actor, id: string): Promise<void> {
	await db().transaction(async (tx) => {
		const [row] = await tx.delete(notifyChannels).where(eq(notifyChannels.id, id)).returning();
		if (!row) throw notFound('Channel');
		await recordAudit(
			actor,
			{ action: 'notify.channel.delete', targetType: 'notify_channel', targetId: id, details: { name: row.name } },
			tx
		);
	});
}

export function listChannels(): Promise<NotifyChannel[]> {
	return db().select().from(notifyChannels).orderBy(asc(notifyChannels.name));
}

export async function getChannel(id: string): Promise<NotifyChannel> {
	const [row] = await db().select().from(notifyChannels).where(eq(notifyChannels.id, id));
	if (!row) throw notFound('Channel');
	return row;
}

/** The enabled channels that receive a kind of event. */
export async function channelsFor(kind: NotifyEventKind): Promise<NotifyChannel[]> {
	return (await db().select().from(notifyChannels).where(eq(notifyChannels.enabled, true))).filter((c) =>
		c.events.includes(kind)
	);
}

export function openChannel(channel: NotifyChannel): OpenedChannel {
	const key = masterKey();
	return {
		channel,
		url: openSecret(key, channel.sealedUrl, urlContext(channel.id)),
		secret: channel.sealedSecret ? openSecret(key, channel.sealedSecret, secretContext(channel.id)) : null
	};
}

export function recentDeliveries(channelId: string, limit: number): Promise<NotifyDelivery[]> {
	return db()
		.select()
		.from(notifyDeliveries)
		.where(eq(notifyDeliveries.channelId, channelId))
		.orderBy(desc(notifyDeliveries.createdAt))
		.limit(limit);
}
