import { z } from 'zod';
import { fromText, uuidSchema, wrongType } from './common';

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
