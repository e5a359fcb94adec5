import { z } from 'zod';
import { pageSchema } from './common';

const date = z.coerce.date({ error: 'must be a date (ISO 8601)' });

export const auditQuerySchema = pageSchema.extend({
	actor: z.string().trim().max(64).optional(),
	action: z.string().trim().max(64).optional(),
	result: z.enum(['ok', 'denied', 'error'], { error: 'must be ok, denied or error' }).optional(),
	since: date.optional(),
	until: date.optional()
});
