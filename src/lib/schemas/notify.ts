import { z } from 'zod';
import { checkbox, fromText, wrongType } from './common';

/** What a channel can be told about (docs/integrations.md). */
export const notifyEventKinds = [
	'run.failed',
	'run.needs_attention',
	'rollout.paused',
	'rollout.finished',
	'certificate.expiring_30',
	'certificate.expiring_7',
	'certificate.expired',
	'security_updates.pending',
	'reboot.required',
	'host_key.changed',
	'node.unreachable',
	'auto_update.disabled'
] as const;
export type NotifyEventKind = (typeof notifyEventKinds)[number];

export const notifyChannelKinds = ['webhook', 'slack'] as const;

const whole = (min: number, max: number) =>
	fromText(z.number(wrongType('must be a number')).int('must be a whole number').min(min).max(max));

export const createChannelSchema = z
	.object({
		name: z
			.string(wrongType('is required'))
			.trim()
			.min(1, 'is required')
			.max(64)
			.regex(/^[\w .-]+$/, 'may only contain letters, digits, spaces, dots, dashes and underscores'),
		kind: z.enum(notifyChannelKinds, { error: 'must be one of webhook, slack' }),
		url: z
			.string(wrongType('is required'))
			.trim()
			.min(1, 'is required')
			.max(2_048)
			.refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'must be an http or https URL'),
		/** The webhook's signing key; generated when not given (shown once). Slack channels have none. */
		secret: z.string(wrongType('must be a string')).min(16).max(256).optional(),
		events: z
			.array(
				z.enum(notifyEventKinds, { error: `must be one of ${notifyEventKinds.join(', ')}` }),
				wrongType('must be a list')
			)
			.min(1, 'choose at least one event')
			.max(notifyEventKinds.length),
		security_days: whole(0, 365).default(7),
		reboot_days: whole(0, 365).default(3),
		unreachable_minutes: whole(1, 10_080).default(15),
		enabled: z.boolean(wrongType('must be true or false')).default(true)
	})
	.strict();
export type CreateChannelInput = z.infer<typeof createChannelSchema>;

/** The same from the Settings form: the events as checkboxes of one name (one ticked arrives as a string). */
export const channelFormSchema = createChannelSchema.extend({
	events: z.preprocess((v) => (typeof v === 'string' ? [v] : (v ?? [])), createChannelSchema.shape.events),
	secret: z
		.string()
		.transform((s) => s || undefined)
		.pipe(z.string().min(16).max(256).optional())
		.optional(),
	enabled: checkbox.default(false)
});

export const notifySettingsSchema = z
	.object({ allow_private_targets: z.boolean(wrongType('must be true or false')) })
	.strict();

export const deliveriesQuerySchema = z.object({ limit: whole(1, 200).default(50) }).strict();
