import { and, asc, count, eq, ne, sql } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db, type Database } from '$lib/server/db';
import { users, type Role, type User } from '$lib/server/db/schema';
import { conflict, notFound, ServiceError } from '$lib/server/errors';
import { log } from '$lib/server/log';
import { passwordSchema, usernameSchema } from '$lib/schemas/auth';
import { hashPassword, verifyAgainstDummy, verifyPassword } from './password';
import { invalidateUserSessions } from './session';

export type PublicUser = Omit<User, 'passwordHash'>;

const publicColumns = {
	id: users.id,
	username: users.username,
	role: users.role,
	disabled: users.disabled,
	createdAt: users.createdAt,
	updatedAt: users.updatedAt
};

// Serialises "create the first admin" so that two racing set-up requests cannot both succeed.
const FIRST_ADMIN_LOCK_ID = 7_140_232;
// Serialises changes to who is an active admin, so two admins demoting each other cannot leave none.
const ADMIN_SET_LOCK_ID = 7_140_233;

export async function countUsers(): Promise<number> {
	const [row] = await db().select({ n: count() }).from(users);
	return row?.n ?? 0;
}

export async function listUsers(): Promise<PublicUser[]> {
	return db().select(publicColumns).from(users).orderBy(asc(users.username));
}

export async function getUser(id: string): Promise<PublicUser> {
	const [user] = await db().select(publicColumns).from(users).where(eq(users.id, id));
	if (!user) throw notFound('User');
	return user;
}

async function insertUser(tx: Database, input: { username: string; password: string; role: Role }) {
	const passwordHash = await hashPassword(input.password);
	const [created] = await tx
		.insert(users)
		.values({ username: input.username, passwordHash, role: input.role })
		.onConflictDoNothing({ target: users.username })
		.returning(publicColumns);
	if (!created) throw conflict(`The username ${input.username} is taken`, { username: 'already taken' });
	return created;
}

export async function createUser(
	actor: Actor,
	input: { username: string; password: string; role: Role }
): Promise<PublicUser> {
	const user = await insertUser(db(), input);
	await recordAudit(actor, {
		action: 'user.create',
		targetType: 'user',
		targetId: user.id,
		details: { username: user.username, role: user.role }
	});
	return user;
}

/**
 * Creates the first admin, only while no user exists. Returns null when someone got there first:
 * the set-up page and FLOTILLA_ADMIN_PASSWORD each work exactly once.
 */
export async function createFirstAdmin(input: { username: string; password: string }): Promise<PublicUser | null> {
	return db().transaction(async (tx) => {
		await tx.execute(sql`select pg_advisory_xact_lock(${FIRST_ADMIN_LOCK_ID})`);
		const [row] = await tx.select({ n: count() }).from(users);
		if ((row?.n ?? 0) > 0) return null;
		return insertUser(tx as unknown as Database, { ...input, role: 'admin' });
	});
}

/** At start-up: FLOTILLA_ADMIN_USER / FLOTILLA_ADMIN_PASSWORD create the first admin when there is none. */
export async function ensureFirstAdminFromEnv(username: string, password: string | undefined): Promise<void> {
	if (!password) return;
	// The same rules as the set-up page, so that the admin made here can sign in with what was given.
	const name = usernameSchema.safeParse(username);
	if (!name.success) throw new Error(`FLOTILLA_ADMIN_USER ${name.error.issues[0]!.message}`);
	const pass = passwordSchema.safeParse(password);
	if (!pass.success) throw new Error(`FLOTILLA_ADMIN_PASSWORD ${pass.error.issues[0]!.message}`);
	const created = await createFirstAdmin({ username: name.data, password: pass.data });
	if (created) log.info({ username }, 'created the first admin from FLOTILLA_ADMIN_PASSWORD');
}

export type AuthenticationResult =
	{ ok: true; user: PublicUser } | { ok: false; reason: 'invalid_credentials' | 'disabled' };

export async function authenticate(username: string, password: string): Promise<AuthenticationResult> {
	const [user] = await db().select().from(users).where(eq(users.username, username.toLowerCase()));
	if (!user) return { ok: await verifyAgainstDummy(password), reason: 'invalid_credentials' };
	if (!(await verifyPassword(user.passwordHash, password))) return { ok: false, reason: 'invalid_credentials' };
	if (user.disabled) return { ok: false, reason: 'disabled' };
	const { passwordHash: _, ...rest } = user;
	return { ok: true, user: rest };
}

/** The console must always keep one admin who can sign in. */
async function assertAnotherActiveAdmin(tx: Database, userId: string): Promise<void> {
	const [row] = await tx
		.select({ n: count() })
		.from(users)
		.where(and(eq(users.role, 'admin'), eq(users.disabled, false), ne(users.id, userId)));
	if ((row?.n ?? 0) === 0) {
		throw new ServiceError('conflict', 'This is the last active admin: make another admin first');
	}
}

export async function updateUser(
	actor: Actor,
	id: string,
	changes: { role?: Role; disabled?: boolean }
): Promise<PublicUser> {
	const updated = await db().transaction(async (txn) => {
		const tx = txn as unknown as Database;
		await tx.execute(sql`select pg_advisory_xact_lock(${ADMIN_SET_LOCK_ID})`);
		const [user] = await tx.select(publicColumns).from(users).where(eq(users.id, id));
		if (!user) throw notFound('User');
		const losesAdmin =
			user.role === 'admin' && !user.disabled && ((changes.role && changes.role !== 'admin') || changes.disabled);
		if (losesAdmin) await assertAnotherActiveAdmin(tx, id);
		const [row] = await tx
			.update(users)
			.set({ ...changes, updatedAt: new Date() })
			.where(eq(users.id, id))
			.returning(publicColumns);
		return row!;
	});
	// A disabled user is signed out at once; API tokens stop working because their owner is disabled.
	if (changes.disabled) await invalidateUserSessions(id);
	await recordAudit(actor, { action: 'user.update', targetType: 'user', targetId: id, details: changes });
	return updated;
}

/** An admin sets a new password for someone: every session of theirs ends. */
export async function resetPassword(actor: Actor, id: string, password: string): Promise<void> {
	await getUser(id);
	await db()
		.update(users)
		.set({ passwordHash: await hashPassword(password), updatedAt: new Date() })
		.where(eq(users.id, id));
	await invalidateUserSessions(id);
	await recordAudit(actor, { action: 'user.password_reset', targetType: 'user', targetId: id });
}

/** Changes one's own password after checking the current one; every other session of the user ends. */
export async function changeOwnPassword(
	id: string,
	current: string,
	next: string,
	keepSessionId: string | undefined
): Promise<void> {
	const [user] = await db().select().from(users).where(eq(users.id, id));
	if (!user) throw notFound('User');
	if (!(await verifyPassword(user.passwordHash, current))) {
		throw new ServiceError('validation_failed', 'The current password is wrong', {
			current_password: 'does not match'
		});
	}
	await db()
		.update(users)
		.set({ passwordHash: await hashPassword(next), updatedAt: new Date() })
		.where(eq(users.id, id));
	await invalidateUserSessions(id, keepSessionId);
}
