import { z } from 'zod';
import { roleSchema, scopeSchema, wrongType } from './common';

export const usernameSchema = z
	.string(wrongType('is required'))
	.trim()
	.toLowerCase()
	.regex(/^[a-z0-9][a-z0-9._-]{1,63}$/, 'must be 2–64 letters, digits, dots, dashes or underscores');

// Long passphrases are encouraged; the upper bound keeps argon2 from hashing megabytes on request.
export const passwordSchema = z
	.string(wrongType('is required'))
	.min(12, 'must be at least 12 characters')
	.max(256, 'must be at most 256 characters');

export const loginSchema = z.object({
	username: z.string(wrongType('is required')).trim().min(1, 'is required').max(64),
	password: z.string(wrongType('is required')).min(1, 'is required').max(256)
});

export const setupSchema = z
	.object({ username: usernameSchema, password: passwordSchema, confirm: z.string() })
	.refine((v) => v.password === v.confirm, { path: ['confirm'], message: 'does not match the password' });

export const createUserSchema = z.object({
	username: usernameSchema,
	password: passwordSchema,
	role: roleSchema
});

export const updateUserSchema = z
	.object({ role: roleSchema.optional(), disabled: z.boolean(wrongType('must be true or false')).optional() })
	.refine((v) => v.role !== undefined || v.disabled !== undefined, {
		message: 'nothing to change: give role or disabled'
	});

export const resetPasswordSchema = z.object({ password: passwordSchema });

export const changePasswordSchema = z
	.object({ current_password: z.string().min(1, 'is required'), new_password: passwordSchema, confirm: z.string() })
	.refine((v) => v.new_password === v.confirm, { path: ['confirm'], message: 'does not match the new password' });

export const createTokenSchema = z.object({
	name: z.string(wrongType('is required')).trim().min(1, 'is required').max(80, 'must be at most 80 characters'),
	scopes: z.array(scopeSchema, wrongType('must be a list of scopes')).min(1, 'pick at least one scope'),
	expires_in_days: z
		.number(wrongType('must be a number of days'))
		.int('must be a whole number of days')
		.min(1, 'must be at least 1 day')
		.max(3650, 'must be at most 3650 days')
		.nullable()
		.optional()
});
