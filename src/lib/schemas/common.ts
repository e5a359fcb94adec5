import { z } from 'zod';

export const roleSchema = z.enum(['viewer', 'operator', 'admin'], {
	error: 'must be one of viewer, operator, admin'
});

export const scopeSchema = z.enum(['read', 'operate', 'admin'], { error: 'must be one of read, operate, admin' });

export const uuidSchema = z.uuid({ error: 'must be a UUID' });

/** `?limit=` and `?cursor=` of every list endpoint (docs/api.md: default 50, max 500). */
export const pageSchema = z.object({
	limit: z.coerce.number().int('must be a whole number').min(1).max(500).default(50),
	cursor: z.coerce.number().int('must be a whole number').positive().optional()
});

/** HTML checkboxes send "on" or nothing; JSON sends booleans. */
export const checkbox = z.preprocess((v) => v === 'on' || v === 'true' || v === true, z.boolean());
