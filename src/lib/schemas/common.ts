import { z } from 'zod';

/**
 * A message for a value of the wrong type (or a missing one) only. Zod gives a schema's own `error` to every
 * check that has no message of its own, so `z.string({ error: 'is required' }).max(64)` called a 65-character
 * name "required"; the checks' messages come from `readableIssue` below instead.
 */
export function wrongType(message: string) {
	return { error: (issue: { code: string }) => (issue.code === 'invalid_type' ? message : undefined) };
}

/** Messages for limits that carry none of their own, in the words the rest of the field errors use. */
function readableIssue(issue: z.core.$ZodRawIssue): string | undefined {
	if (issue.code !== 'too_big' && issue.code !== 'too_small') return undefined;
	const bound = issue.code === 'too_big' ? `at most ${issue.maximum}` : `at least ${issue.minimum}`;
	if (issue.origin === 'string') return `must be ${bound} characters`;
	if (issue.origin === 'array' || issue.origin === 'set') return `must have ${bound} items`;
	return `must be ${bound}`;
}
z.config({ customError: readableIssue });

export const roleSchema = z.enum(['viewer', 'operator', 'admin'], {
	error: 'must be one of viewer, operator, admin'
});

export const scopeSchema = z.enum(['read', 'operate', 'admin'], { error: 'must be one of read, operate, admin' });

export const uuidSchema = z.uuid({ error: 'must be a UUID' });

/** `?limit=` and `?cursor=` of every list endpoint (docs/api.md: default 50, max 500). */
export const pageSchema = z.object({
	limit: fromText(z.number(wrongType('must be a number')).int('must be a whole number').min(1).max(500)).default(50),
	cursor: fromText(z.number(wrongType('must be a number')).int('must be a whole number').positive()).optional()
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
