import { describe, expect, it } from 'vitest';
import { fieldErrors } from './errors';
import { createTokenSchema, createUserSchema, setupSchema, updateUserSchema } from './auth';
import { auditQuerySchema } from './audit';

const errorsOf = (r: { success: boolean; error?: unknown }) =>
	r.success ? {} : fieldErrors(r.error as Parameters<typeof fieldErrors>[0]);

describe('input schemas', () => {
	it('name the field that is wrong', () => {
		expect(errorsOf(createUserSchema.safeParse({ username: 'a b', password: 'short', role: 'root' }))).toEqual({
			username: expect.stringContaining('letters, digits'),
			password: 'must be at least 12 characters',
			role: 'must be one of viewer, operator, admin'
		});
		expect(errorsOf(setupSchema.safeParse({ username: 'admin', password: 'x'.repeat(12), confirm: 'y' }))).toEqual({
			confirm: 'does not match the password'
		});
		expect(errorsOf(createTokenSchema.safeParse({ name: '', scopes: ['root'], expires_in_days: 0 }))).toMatchObject({
			name: 'is required',
			'scopes.0': 'must be one of read, operate, admin',
			expires_in_days: 'must be at least 1 day'
		});
		expect(errorsOf(auditQuerySchema.safeParse({ since: '+200000-01-01', until: '-010000-01-01' }))).toEqual({
			since: 'must be between years 1 and 9999',
			until: 'must be between years 1 and 9999'
		});
		expect(errorsOf(auditQuerySchema.safeParse({ limit: '9000', since: 'yesterday' }))).toMatchObject({
			limit: expect.any(String),
			since: 'must be a date (ISO 8601)'
		});
	});

	it('normalise what they accept', () => {
		expect(createUserSchema.parse({ username: ' Alice ', password: 'x'.repeat(12), role: 'viewer' }).username).toBe(
			'alice'
		);
		expect(auditQuerySchema.parse({})).toEqual({ limit: 50 });
		expect(updateUserSchema.safeParse({}).success).toBe(false);
	});
});
