import { z } from 'zod';
import { rolloutStates } from '$lib/states';
import { fromText, pageSchema, uuidSchema, wrongType } from './common';
import { roleNameSchema } from './nodes';

/** Semantic Versioning 2.0.0 (semver.org's own expression): MAJOR.MINOR.PATCH[-pre][+build]. */
export const SEMVER =
	/^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export const semverSchema = z
	.string(wrongType('is required'))
	.max(128, 'must be at most 128 characters')
	.regex(SEMVER, 'must be a semantic version such as 1.4.0 (semver.org)');

export const channelSchema = z.enum(['stable', 'beta'], { error: 'must be stable or beta' });

/**
 * A release manifest as uploaded (docs/releases.md). No field is transformed or defaulted: the signature
 * covers the canonical JSON of exactly what was sent.
 */
export const manifestSchema = z
	.object({
		version: semverSchema,
		sha: z
			.string(wrongType('is required'))
			.regex(/^[0-9a-f]{7,64}$/, 'must be a commit id: 7 to 64 lowercase hexadecimal characters'),
		channel: channelSchema,
		migrations_required: z.boolean(wrongType('is required: true or false')),
		breaking_changes: z
			.string(wrongType('is required: text, or null when there are none'))
			.max(2_000, 'must be at most 2000 characters')
			.nullable(),
		released_at: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 timestamp such as 2026-05-01T12:00:00Z' }),
		signature: z
			.string(wrongType('is required: sign the manifest (npm run release:manifest)'))
			.regex(/^(?:[0-9a-f]{64}|[0-9a-f]{128})$/, 'must be hexadecimal: 64 characters (HMAC-SHA256) or 128 (Ed25519)')
	})
	.strict();
export type Manifest = z.infer<typeof manifestSchema>;

const percentSchema = fromText(
	z
		.number(wrongType('must be a number'))
		.int('must be a whole number')
		.min(1, 'must be at least 1')
		.max(100, 'must be at most 100')
);

export const stageSchema = z
	.object({
		percent: percentSchema,
		/** Minutes; fractions allowed (0.05 is 3 seconds). */
		bake_minutes: fromText(
			z.number(wrongType('must be a number')).min(0, 'must be at least 0').max(720, 'must be at most 720')
		).optional(),
		bake_seconds: fromText(
			z
				.number(wrongType('must be a number'))
				.int('must be a whole number')
				.min(0, 'must be at least 0')
				.max(43_200, 'must be at most 43200')
		).optional()
	})
	.strict()
	.refine((s) => s.bake_minutes === undefined || s.bake_seconds === undefined, {
		message: 'give bake_minutes or bake_seconds, not both',
		path: ['bake_seconds']
	});

const labelSchema = z
	.string(wrongType('must be text'))
	.regex(/^[A-Za-z0-9_.-]{1,64}(=[^\s]{0,200})?$/, 'must be key or key=value');

export const rolloutTargetSchema = z
	.object({
		channel: channelSchema.optional(),
		roles: z.array(roleNameSchema, wrongType('must be a list of role names')).max(100).optional(),
		labels: z.array(labelSchema, wrongType('must be a list of labels')).max(50).optional(),
		nodes: z
			.array(z.string(wrongType('must be text')).min(1).max(200), wrongType('must be a list of node ids or names'))
			.max(10_000)
			.optional()
	})
	.strict();

export const createRolloutSchema = z
	.object({
		/** The id a dry run answered: stage membership hangs on it, so the rollout gets the stages it previewed. */
		id: uuidSchema.optional(),
		release_id: uuidSchema,
		target: rolloutTargetSchema.default({}),
		strategy: z.enum(['immediate', 'staged', 'canary'], { error: 'must be immediate, staged or canary' }),
		stages: z
			.array(stageSchema, wrongType('must be a list of stages'))
			.min(1, 'must have at least 1 stage')
			.max(10, 'must have at most 10 stages')
			.optional(),
		failure_threshold_percent: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(0).max(100)
		).default(10),
		min_finished_nodes: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(10_000)
		).default(3),
		concurrency: fromText(
			z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(500)
		).default(5),
		require_approval: z.boolean(wrongType('must be true or false')).default(false),
		respect_windows: z.boolean(wrongType('must be true or false')).default(false),
		start_at: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 timestamp' }).optional(),
		dry_run: z.boolean(wrongType('must be true or false')).default(false)
	})
	.strict();
export type CreateRolloutInput = z.infer<typeof createRolloutSchema>;

/**
 * `POST /api/rollouts` as batch-rollout scripts send it (docs/releases.md, "Batch rollouts"): a release (its
 * manifest's id), a channel, and how many nodes each batch updates; every batch after the first waits for
 * `advance`. Told apart from the native body by its `manifestId`.
 */
export const batchRolloutSchema = z
	.object({
		manifestId: uuidSchema,
		channel: channelSchema,
		batchSize: fromText(
			z
				.number(wrongType('is required: how many nodes a batch updates'))
				.int('must be a whole number')
				.min(1, 'must be at least 1')
				.max(10_000, 'must be at most 10000')
		)
	})
	.strict();
export type BatchRolloutInput = z.infer<typeof batchRolloutSchema>;

/** Any JSON object: which of the two rollout bodies it is decides the schema that checks it. */
export const jsonObjectSchema = z.record(z.string(), z.unknown(), wrongType('must be a JSON object'));

/** GET /api/releases: newest first, a page at a time from a release's created_at. */
export const releaseListQuerySchema = pageSchema.extend({
	cursor: z.iso.datetime({ error: 'must be a created_at timestamp' }).optional()
});

/** GET /api/rollouts: newest first, a page at a time, of one state or all. */
export const rolloutListQuerySchema = pageSchema.extend({
	state: z.enum(rolloutStates, { error: `must be one of ${rolloutStates.join(', ')}` }).optional()
});
