import { z } from 'zod';
import { pageSchema } from './common';

// PostgreSQL's timestamptz ends at year 294276 but refuses JavaScript's extended years long before that;
// no audit row predates year 1 or postdates 9999 anyway.
const date = z.coerce
	.date({ error: 'must be a date (ISO 8601)' })
	.refine((d) => d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999, 'must be between years 1 and 9999');

export const auditQuerySchema = pageSchema.extend({
	actor: z.string().trim().max(64).optional(),
	action: z.string().trim().max(64).optional(),
	result: z.enum(['ok', 'denied', 'error'], { error: 'must be ok, denied or error' }).optional(),
	since: date.optional(),
	until: date.optional(),
	/** `ndjson` streams every matching row, one JSON object a line (limit and paging do not apply). */
	format: z.enum(['json', 'ndjson'], { error: 'must be json or ndjson' }).optional()
});
