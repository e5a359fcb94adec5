import { z } from 'zod';
import { fromText, uuidSchema, wrongType } from './common';
import { DAYS, hhmm, isTimeZone } from './system-updates';

export const sha256Schema = z
	.string(wrongType('is required: the image sha256, 64 lowercase hexadecimal characters'))
	.regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hexadecimal characters');

/** `POST /api/appliances/images`: a release's image, declared before its bytes are sent (docs/appliances.md). */
export const declareImageSchema = z
	.object({
		release_id: uuidSchema,
		sha256: sha256Schema,
		size: fromText(
			z
				.number(wrongType('is required: the image size in bytes'))
				.int('must be a whole number')
				.min(1, 'must be at least 1')
		),
		signature: z
			.string(wrongType('is required: Ed25519 over the sha256 (64 hex characters), in hex'))
			.regex(/^[0-9a-f]{128}$/, 'must be an Ed25519 signature: 128 lowercase hexadecimal characters'),
		/** Where the console fetches the image from, instead of an upload in chunks. */
		url: z
			.string(wrongType('must be an http or https URL'))
			.min(1, 'must be an http or https URL')
			.max(2048, 'must be at most 2048 characters')
			.optional()
	})
	.strict();

/** `POST /api/appliances/push`: push an image to appliances now, outside a rollout. */
export const pushSchema = z
	.object({
		image_id: uuidSchema,
		nodes: z
			.array(z.string(wrongType('must be text')).min(1).max(200), wrongType('must be a list of node ids or names'))
			.min(1, 'must name at least 1 appliance')
			.max(10_000),
		/** `wait`: reboot in each appliance's maintenance window; `ignore`: reboot as soon as the image is ready. */
		window: z.enum(['wait', 'ignore'], { error: 'must be wait or ignore' }).default('ignore'),
		concurrency: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(500)
		).default(5),
		/** How often a ready appliance looks at its window and its skip-window request. */
		window_poll_seconds: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(600)
		).default(30),
		reboot_timeout_seconds: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(5).max(3600)
		).default(600)
	})
	.strict();
export type PushInput = z.infer<typeof pushSchema>;

/** The `Upload-Offset` header of an image chunk: where the chunk starts. */
export const uploadOffsetSchema = fromText(
	z.number(wrongType('must be a whole number of bytes')).int('must be a whole number').min(0, 'must be at least 0')
);

/**
 * A release's version as release scripts of other control planes write it: the semantic version, optionally
 * after a `v`, with missing minor and patch parts meaning 0 (`v44` is 44.0.0, `v1.4` is 1.4.0).
 */
export const looseVersionSchema = z
	.string(wrongType('is required: the release version, e.g. v44 or 1.4.0'))
	.max(128, 'must be at most 128 characters')
	.regex(
		/^v?(0|[1-9]\d*)(\.(0|[1-9]\d*)){0,2}(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/,
		'must be a release version such as v44, 1.4 or 1.4.0'
	);

/** `v44` → `44.0.0`, `1.4-rc.1` → `1.4.0-rc.1`: the semantic version `looseVersionSchema` stands for. */
export function semverOf(loose: string): string {
	const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(.*)$/.exec(loose)!;
	return `${m[1]}.${m[2] ?? 0}.${m[3] ?? 0}${m[4]}`;
}

/**
 * `POST /api/fleet/updates` (docs/appliances.md, "Fleet updates"): an appliance image's rollout and maintenance
 * window in one body, in the field names fleet-update scripts use.
 */
export const fleetUpdateSchema = z
	.object({
		version: looseVersionSchema,
		iso_url: z
			.url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
			.max(2048, 'must be at most 2048 characters'),
		sha256: sha256Schema,
		rollout: z
			.object({
				strategy: z.enum(['immediate', 'staged', 'canary'], { error: 'must be immediate, staged or canary' }),
				stages: z
					.array(
						z
							.object({
								percent: fromText(
									z
										.number(wrongType('must be a number'))
										.int('must be a whole number')
										.min(1, 'must be at least 1')
										.max(100, 'must be at most 100')
								),
								/** How long the rollout waits after this stage before the next one. */
								delay_hours: fromText(
									z
										.number(wrongType('must be a number'))
										.min(0, 'must be at least 0')
										.max(168, 'must be at most 168 (a week)')
								).default(0)
							})
							.strict(),
						wrongType('must be a list of stages')
					)
					.min(1, 'must have at least 1 stage')
					.max(10, 'must have at most 10 stages')
					.optional()
			})
			.strict()
			.default({ strategy: 'staged' }),
		maintenance_window: z
			.object({
				start: hhmm,
				end: hhmm,
				timezone: z
					.string(wrongType('is required'))
					.max(64, 'must be at most 64 characters')
					.refine(isTimeZone, 'must be an IANA time zone, e.g. America/New_York'),
				days: z
					.array(z.enum(DAYS, { error: 'must be day names, e.g. monday' }), wrongType('must be a list of days'))
					.min(1, 'must name at least one day')
					.max(7)
					.default([...DAYS])
			})
			.strict()
			.refine((w) => w.start !== w.end, { message: 'must differ from start', path: ['end'] })
			.optional()
	})
	.strict();
export type FleetUpdateInput = z.infer<typeof fleetUpdateSchema>;

/** GET /api/appliances/updates: of one run, or the latest. */
export const applianceUpdatesQuerySchema = z.object({ run_id: uuidSchema.optional() }).strict();

/**
 * Installing the appliance's side over SSH (docs/appliances.md, "Installing over SSH"): the watchdog's settings,
 * which the console writes into /etc/flotilla/watchdog.conf with its own URL.
 */
export const installApplianceSchema = z.strictObject({
	unreachable_seconds: fromText(
		z
			.number(wrongType('is required: seconds without the console before the watchdog goes back'))
			.int('must be a whole number')
			.min(60, 'must be at least 60')
			.max(7 * 86_400, 'must be at most 604800 (a week)')
	).default(3600),
	armed_seconds: fromText(
		z
			.number(wrongType('is required: seconds after an update the watchdog watches'))
			.int('must be a whole number')
			.min(60, 'must be at least 60')
			.max(30 * 86_400, 'must be at most 2592000 (30 days)')
	).default(86_400)
});
export type InstallApplianceInput = z.infer<typeof installApplianceSchema>;
