import { describe, expect, it } from 'vitest';
import { fieldErrors } from './errors';
import { createTokenSchema, createUserSchema, loginSchema, setupSchema, updateUserSchema } from './auth';
import { pageSchema } from './common';
import { triggerSchema } from './code-sync';
import { auditQuerySchema } from './audit';

const errorsOf = (r: { success: boolean; error?: unknown }) =>
	r.success ? {} : fieldErrors(r.error as Parameters<typeof fieldErrors>[0]);

describe('input schemas', () => {
	it('call a value past its limit too long or too large, not missing or of the wrong type', () => {
		expect(errorsOf(loginSchema.safeParse({ username: 'a'.repeat(65), password: 'x' }))).toEqual({
			username: 'must be at most 64 characters'
		});
		expect(errorsOf(loginSchema.safeParse({ password: 'x' }))).toEqual({ username: 'is required' });
		expect(errorsOf(pageSchema.safeParse({ limit: '501' }))).toEqual({ limit: 'must be at most 500' });
		expect(errorsOf(pageSchema.safeParse({ limit: 'many' }))).toEqual({ limit: 'must be a number' });
		const roles = Array.from({ length: 65 }, (_, i) => `r${i}`);
		expect(errorsOf(triggerSchema.safeParse({ scope: { roles } }))).toEqual({
			'scope.roles': 'must have at most 64 items'
		});
	});

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
