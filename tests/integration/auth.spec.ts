import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
	authenticateApiToken,
	createApiToken,
	listApiTokens,
	revokeApiToken
} from '../../src/lib/server/auth/api-tokens';
import {
	createSession,
	invalidateUserSessions,
	SESSION_LIFETIME_MS,
	validateSessionToken
} from '../../src/lib/server/auth/session';
import {
	claimLoginAttempt,
	clearLoginFailures,
	recordLoginFailure,
	throttleKeys
} from '../../src/lib/server/auth/throttle';
import { hashToken } from '../../src/lib/server/auth/tokens';
import {
	authenticate,
	changeOwnPassword,
	countUsers,
	createFirstAdmin,
	createUser,
	ensureFirstAdminFromEnv,
	resetPassword,
	updateUser
} from '../../src/lib/server/auth/users';
import { listAudit, recordAudit, systemActor } from '../../src/lib/server/audit';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { apiTokens, auditLog, loginThrottle, sessions, users } from '../../src/lib/server/db/schema';
import { ServiceError } from '../../src/lib/server/errors';
import { backends } from '../support/databases';

const password = 'correct horse battery staple';

describe.each(backends)('auth and audit on $name', ({ open }) => {
	let handle: DatabaseHandle;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
	});
	afterAll(async () => {
		useDatabase(undefined);
		await handle.close();
	});
	beforeEach(async () => {
		await db().execute(sql`truncate ${users}, ${sessions}, ${apiTokens}, ${loginThrottle}, ${auditLog} cascade`);
	});

	describe('first admin', () => {
		it('is created from the environment once, and never again once a user exists', async () => {
			await ensureFirstAdminFromEnv('root', password);
			await ensureFirstAdminFromEnv('second', password);
			const all = await db().select().from(users);
			expect(all.map((u) => [u.username, u.role])).toEqual([['root', 'admin']]);
		});

		it('from the environment follows the set-up page rules, so it can always sign in', async () => {
			await expect(ensureFirstAdminFromEnv('Not Valid!', password)).rejects.toThrow(/FLOTILLA_ADMIN_USER/);
			await expect(ensureFirstAdminFromEnv('admin', 'short')).rejects.toThrow(
				/FLOTILLA_ADMIN_PASSWORD must be at least 12/
			);
			await ensureFirstAdminFromEnv('Root', password);
			expect(await authenticate('root', password)).toMatchObject({ ok: true, user: { username: 'root' } });
		});

		it('is not created without a password', async () => {
			await ensureFirstAdminFromEnv('admin', undefined);
			expect(await countUsers()).toBe(0);
		});

		it('can be claimed by exactly one of many racing set-up requests', async () => {
			const results = await Promise.all(
				Array.from({ length: 5 }, (_, i) => createFirstAdmin({ username: `racer${i}`, password }))
			);
			expect(results.filter(Boolean)).toHaveLength(1);
			expect(await countUsers()).toBe(1);
		});
	});

	describe('passwords and users', () => {
		it('accepts the right password and refuses a wrong one or an unknown user', async () => {
			await createUser(systemActor, { username: 'alice', password, role: 'operator' });
			expect(await authenticate('alice', password)).toMatchObject({ ok: true, user: { username: 'alice' } });
			expect(await authenticate('ALICE', password)).toMatchObject({ ok: true });
			expect(await authenticate('alice', 'wrong password!!')).toEqual({ ok: false, reason: 'invalid_credentials' });
			expect(await authenticate('nobody', password)).toEqual({ ok: false, reason: 'invalid_credentials' });
		});

		it('stores only an argon2id hash of the password', async () => {
			await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const [row] = await db().select().from(users);
			expect(row!.passwordHash).toMatch(/^\$argon2id\$/);
			expect(row!.passwordHash).not.toContain(password);
		});

		it('refuses a taken username with a conflict naming the field', async () => {
			await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const err = await createUser(systemActor, { username: 'alice', password, role: 'admin' }).catch((e) => e);
			expect(err).toBeInstanceOf(ServiceError);
			expect(err).toMatchObject({ status: 409, fields: { username: 'already taken' } });
		});

		it('signs a disabled user out and refuses their sign-in', async () => {
			await createUser(systemActor, { username: 'root', password, role: 'admin' });
			const bob = await createUser(systemActor, { username: 'bob', password, role: 'operator' });
			const { token } = await createSession(bob.id);
			await updateUser(systemActor, bob.id, { disabled: true });
			expect(await validateSessionToken(token)).toBeNull();
			expect(await authenticate('bob', password)).toEqual({ ok: false, reason: 'disabled' });
		});

		it('never lets the last active admin be demoted or disabled', async () => {
			const root = await createUser(systemActor, { username: 'root', password, role: 'admin' });
			await expect(updateUser(systemActor, root.id, { role: 'viewer' })).rejects.toMatchObject({ status: 409 });
			await expect(updateUser(systemActor, root.id, { disabled: true })).rejects.toMatchObject({ status: 409 });
			await createUser(systemActor, { username: 'second', password, role: 'admin' });
			await expect(updateUser(systemActor, root.id, { role: 'viewer' })).resolves.toMatchObject({ role: 'viewer' });
		});

		it('keeps one admin even when two admins demote each other at the same moment', async () => {
			const a = await createUser(systemActor, { username: 'ann', password, role: 'admin' });
			const b = await createUser(systemActor, { username: 'ben', password, role: 'admin' });
			const results = await Promise.allSettled([
				updateUser(systemActor, a.id, { role: 'viewer' }),
				updateUser(systemActor, b.id, { disabled: true })
			]);
			expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
			const admins = await db()
				.select()
				.from(users)
				.where(sql`role = 'admin' and not disabled`);
			expect(admins).toHaveLength(1);
		});

		it('ends every other session when users change their own password', async () => {
			const bob = await createUser(systemActor, { username: 'bob', password, role: 'viewer' });
			const here = await createSession(bob.id);
			const elsewhere = await createSession(bob.id);
			await expect(
				changeOwnPassword(bob.id, 'wrong current password', 'new passphrase here', here.session.id)
			).rejects.toMatchObject({
				status: 400,
				fields: { current_password: 'does not match' }
			});
			expect(await validateSessionToken(elsewhere.token)).not.toBeNull();
			await changeOwnPassword(bob.id, password, 'new passphrase here', here.session.id);
			expect(await validateSessionToken(here.token)).not.toBeNull();
			expect(await validateSessionToken(elsewhere.token)).toBeNull();
			expect(await authenticate('bob', 'new passphrase here')).toMatchObject({ ok: true });
		});

		it('ends every session of a user whose password an admin resets', async () => {
			const bob = await createUser(systemActor, { username: 'bob', password, role: 'viewer' });
			const a = await createSession(bob.id);
			const b = await createSession(bob.id);
			await resetPassword(systemActor, bob.id, 'a brand new password');
			expect(await validateSessionToken(a.token)).toBeNull();
			expect(await validateSessionToken(b.token)).toBeNull();
			expect(await authenticate('bob', 'a brand new password')).toMatchObject({ ok: true });
		});
	});

	describe('sessions', () => {
		it('stores only the hash of the token and resolves the token to its user', async () => {
			const alice = await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const { token } = await createSession(alice.id);
			const rows = await db().select().from(sessions);
			expect(rows).toHaveLength(1);
			expect(rows[0]!.id).toBe(hashToken(token));
			expect(rows[0]!.id).not.toContain(token);
			expect((await validateSessionToken(token))?.user).toEqual({ id: alice.id, username: 'alice', role: 'viewer' });
			expect(await validateSessionToken(token + 'x')).toBeNull();
		});

		it('refuses and deletes an expired session', async () => {
			const alice = await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const { token, session } = await createSession(alice.id);
			await db().execute(sql`update ${sessions} set expires_at = now() - interval '1 second' where id = ${session.id}`);
			expect(await validateSessionToken(token)).toBeNull();
			expect(await db().select().from(sessions)).toHaveLength(0);
		});

		it('slides the expiry forward when the session is used', async () => {
			const alice = await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const { token, session } = await createSession(alice.id);
			const soon = new Date(Date.now() + 2 * 86_400_000);
			await db().execute(sql`update ${sessions} set expires_at = ${soon.toISOString()} where id = ${session.id}`);
			const renewed = await validateSessionToken(token);
			expect(renewed!.session.expiresAt.getTime()).toBeGreaterThan(Date.now() + SESSION_LIFETIME_MS - 60_000);
			const [row] = await db().select().from(sessions);
			expect(row!.expiresAt.getTime()).toBe(renewed!.session.expiresAt.getTime());
		});

		it('signs out everywhere', async () => {
			const alice = await createUser(systemActor, { username: 'alice', password, role: 'viewer' });
			const tokens = await Promise.all([createSession(alice.id), createSession(alice.id)]);
			expect(await invalidateUserSessions(alice.id)).toBe(2);
			for (const { token } of tokens) expect(await validateSessionToken(token)).toBeNull();
		});
	});

	describe('API tokens', () => {
		it('shows the token once, stores its hash, and authenticates with it', async () => {
			const op = await createUser(systemActor, { username: 'op', password, role: 'operator' });
			const { token, record } = await createApiToken(systemActor, op, {
				name: 'ci',
				scopes: ['operate'],
				expiresInDays: 30
			});
			expect(token).toMatch(/^flt_[a-z2-7]{32}$/);
			const [row] = await db().select().from(apiTokens);
			expect(row!.tokenHash).toBe(hashToken(token));
			expect(JSON.stringify(row)).not.toContain(token);
			expect(JSON.stringify(await listApiTokens(op.id))).not.toContain(token);
			expect(await authenticateApiToken(token)).toMatchObject({ via: 'token', level: 'operate', tokenId: record.id });
		});

		it('stops working the moment it is revoked', async () => {
			const op = await createUser(systemActor, { username: 'op', password, role: 'operator' });
			const { token, record } = await createApiToken(systemActor, op, { name: 'ci', scopes: ['read'] });
			expect(await revokeApiToken(systemActor, op.id, record.id)).toBe(true);
			expect(await authenticateApiToken(token)).toBeNull();
			expect(await revokeApiToken(systemActor, op.id, record.id)).toBe(false);
		});

		it('cannot be revoked by another user', async () => {
			const a = await createUser(systemActor, { username: 'a1', password, role: 'operator' });
			const b = await createUser(systemActor, { username: 'b1', password, role: 'admin' });
			const { token, record } = await createApiToken(systemActor, a, { name: 'mine', scopes: ['read'] });
			expect(await revokeApiToken(systemActor, b.id, record.id)).toBe(false);
			expect(await authenticateApiToken(token)).not.toBeNull();
		});

		it('expires', async () => {
			const op = await createUser(systemActor, { username: 'op', password, role: 'operator' });
			const { token } = await createApiToken(systemActor, op, { name: 'ci', scopes: ['read'], expiresInDays: 1 });
			await db().execute(sql`update ${apiTokens} set expires_at = now() - interval '1 second'`);
			expect(await authenticateApiToken(token)).toBeNull();
		});

		it('never grants more than its owner role, now or after a demotion', async () => {
			await createUser(systemActor, { username: 'root', password, role: 'admin' });
			const viewer = await createUser(systemActor, { username: 'v', password, role: 'viewer' });
			await expect(createApiToken(systemActor, viewer, { name: 'x', scopes: ['operate'] })).rejects.toMatchObject({
				status: 403,
				fields: { scopes: expect.stringContaining('operate') }
			});
			const admin = await createUser(systemActor, { username: 'adm', password, role: 'admin' });
			const { token } = await createApiToken(systemActor, admin, { name: 'x', scopes: ['admin'] });
			expect((await authenticateApiToken(token))?.level).toBe('admin');
			await updateUser(systemActor, admin.id, { role: 'viewer' });
			expect((await authenticateApiToken(token))?.level).toBe('read');
		});

		it('is refused when its owner is disabled', async () => {
			await createUser(systemActor, { username: 'root', password, role: 'admin' });
			const op = await createUser(systemActor, { username: 'op', password, role: 'operator' });
			const { token } = await createApiToken(systemActor, op, { name: 'ci', scopes: ['read'] });
			await updateUser(systemActor, op.id, { disabled: true });
			expect(await authenticateApiToken(token)).toBeNull();
		});
	});

	describe('sign-in throttling', () => {
		it('lets a few attempts pass, then makes the username wait, longer after each one', async () => {
			const keys = throttleKeys('10.0.0.1', 'alice');
			for (let i = 0; i < 6; i++) expect(await claimLoginAttempt(keys)).toBe(0);
			const first = await claimLoginAttempt(keys);
			expect(first).toBeGreaterThanOrEqual(1);
			// Refused attempts are not counted: the wait does not grow while the caller is held back.
			expect(await claimLoginAttempt(keys)).toBe(first);
			await db().execute(sql`update ${loginThrottle} set blocked_until = now() where key = ${keys.user}`);
			expect(await claimLoginAttempt(keys)).toBe(0);
			expect(await claimLoginAttempt(keys)).toBeGreaterThan(first);
			// The same username from another address waits too: the lock is per user as well as per address.
			expect(await claimLoginAttempt(throttleKeys('10.9.9.9', 'ALICE'))).toBeGreaterThan(0);
			await clearLoginFailures(keys);
			expect(await claimLoginAttempt(keys)).toBe(0);
		});

		it('lets exactly the free attempts through when guesses arrive all at once', async () => {
			const keys = throttleKeys('10.0.0.4', 'bob');
			const waits = await Promise.all(Array.from({ length: 12 }, () => claimLoginAttempt(keys)));
			expect(waits.filter((w) => w === 0)).toHaveLength(6);
		});

		it('throttles an address that fails on many usernames, and a success elsewhere does not reset it', async () => {
			for (let i = 0; i < 21; i++) await recordLoginFailure(throttleKeys('10.0.0.2', `user${i}`));
			await clearLoginFailures(throttleKeys('10.0.0.2', 'attacker-own-account'));
			expect(await claimLoginAttempt(throttleKeys('10.0.0.2', 'someone-new'))).toBeGreaterThan(0);
			expect(await claimLoginAttempt(throttleKeys('10.0.0.3', 'someone-new'))).toBe(0);
		});
	});

	describe('audit log', () => {
		it('records who, what, target, from where and the result, newest first, with filters and paging', async () => {
			const actor = { id: null, name: 'alice', via: 'session', ip: '192.0.2.7' };
			for (let i = 0; i < 5; i++) {
				await recordAudit(actor, { action: 'user.create', targetType: 'user', targetId: `u${i}` });
			}
			await recordAudit(systemActor, { action: 'token.revoke', result: 'denied', details: { why: 'test' } });

			const first = await listAudit({ limit: 4 });
			expect(first.items.map((r) => r.action)).toEqual(['token.revoke', 'user.create', 'user.create', 'user.create']);
			expect(first.items[1]).toMatchObject({ actorName: 'alice', sourceIp: '192.0.2.7', targetId: 'u4', result: 'ok' });
			const second = await listAudit({ limit: 4, cursor: first.nextCursor! });
			expect(second.items.map((r) => r.targetId)).toEqual(['u1', 'u0']);
			expect(second.nextCursor).toBeNull();

			expect((await listAudit({ limit: 50, action: 'user.' })).items).toHaveLength(5);
			expect((await listAudit({ limit: 50, result: 'denied' })).items).toHaveLength(1);
			expect((await listAudit({ limit: 50, actor: 'system' })).items[0]!.details).toEqual({ why: 'test' });
			expect((await listAudit({ limit: 50, action: '%' })).items).toHaveLength(0);
		});
	});
});
