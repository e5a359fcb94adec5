import { z } from 'zod';

export const roleSchema = z.enum(['viewer', 'operator', 'admin'], {
	error: 'must be one of viewer, operator, admin'
});

export const scopeSchema = z.enum(['read', 'operate', 'admin'], { error: 'must be one of read, operate, admin' });

export const uuidSchema = z.uuid({ error: 'must be a UUID' });

/** `?limit=` and `?cursor=` of every list endpoint (docs/api.md: default 50, max 500). */
export const pageSchema = z.object({
	limit: fromText(z.number({ error: 'must be a number' }).int('must be a whole number').min(1).max(500)).default(50),
	cursor: fromText(z.number({ error: 'must be a number' }).int('must be a whole number').positive()).optional()
});

/**
 * A number as JSON sends it, or as a form or a query string writes it: plain digits (with a sign, a point).
 * Nothing else is read as a number: not a boolean (zod's coerce made `true` a 1), not padded or blank text
 * (`"22 "`), which `schema` then refuses with its own message.
 */
export function fromText<S extends z.ZodType>(schema: S) {
	return z.preprocess((v) => (typeof v === 'string' && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : v), schema);
}

/** HTML checkboxes send "on" or nothing; JSON sends booleans. */
export const checkbox = z.preprocess((v) => v === 'on' || v === 'true' || v === true, z.boolean());
