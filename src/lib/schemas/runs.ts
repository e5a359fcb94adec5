import { z } from 'zod';
import { fromText, pageSchema, uuidSchema, wrongType } from './common';
import { eventTypesSchema } from './events';

const runStates = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;

export const runQuerySchema = pageSchema.extend({
	state: z.enum(runStates, { error: `must be one of ${runStates.join(', ')}` }).optional(),
	kind: z
		.string()
		.regex(/^[a-z][a-z0-9-]{0,40}$/, 'must be a run kind such as check')
		.optional()
});

export const runOptionsSchema = z
	.object({
		concurrency: z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(1_000).optional(),
		max_failures: z.number(wrongType('must be a number')).int('must be a whole number').min(0).optional(),
		max_failure_percent: z.number(wrongType('must be a number')).min(0).max(100).optional(),
		stop_on_first_failure: z.boolean(wrongType('must be true or false')).optional()
	})
	.strict();

export const createRunSchema = z
	.object({
		/** A look-only kind (a flow marked readOnly, today `check`): the route checks it against the registered flows. */
		kind: z.string(wrongType('must be a run kind')).regex(/^[a-z][a-z0-9-]{0,40}$/, 'must be a run kind'),
		nodes: z.array(uuidSchema).min(1, 'name at least one node').max(10_000, 'at most 10,000 nodes'),
		options: runOptionsSchema.optional()
	})
	.strict();

/**
 * `Last-Event-ID` (or `?after=`) of the event streams: the last event id the client has, as plain digits. Nothing
 * else is read as an id: not blank text (zod's coerce made it a 0, the whole backlog), not `0x10` or `1e3`.
 */
export const lastEventIdSchema = z.preprocess(
	(v) => (typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : v),
	z
		.number({ error: 'must be an event id (a whole number ≥ 0)' })
		.int('must be an event id (a whole number ≥ 0)')
		.min(0, 'must be an event id (a whole number ≥ 0)')
		.max(Number.MAX_SAFE_INTEGER, 'must be an event id (a whole number ≥ 0)')
);

/** The query of the event streams (docs/api.md, "Event streams"). */
export const eventStreamQuerySchema = z.object({
	after: lastEventIdSchema.optional().describe('resume after this event id (as Last-Event-ID does)'),
	types: eventTypesSchema
		.optional()
		.describe('comma-separated event types, or families such as task.*: only those are sent')
});

/** The header a browser's EventSource sends on reconnecting; it wins over `?after=`. */
export const eventStreamHeadersSchema = z.object({
	'Last-Event-ID': lastEventIdSchema.optional().describe('resume after this event id (browsers send it on their own)')
});

/** `GET /api/updates/status`: how many ended runs and rollouts to list beside the ones still under way. */
export const updatesStatusQuerySchema = z.object({
	recent: fromText(z.number(wrongType('must be a number')).int('must be a whole number').min(0).max(100)).default(10)
});
