import type { Cookies } from '@sveltejs/kit';
import { and, desc, eq, gt, lt, ne } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { sessions, users, type Session, type User } from '$lib/server/db/schema';
import { generateSecret, hashToken } from './tokens';

export const SESSION_COOKIE = 'flotilla_session';
const DAY_MS = 24 * 60 * 60 * 1000;
/** A session lives 30 days from its last use: sliding expiry. */
export const SESSION_LIFETIME_MS = 30 * DAY_MS;
/** Renew at most once a day, so that each request does not write to the database. */
const RENEW_WHEN_LEFT_MS = SESSION_LIFETIME_MS - DAY_MS;

export type SessionUser = Pick<User, 'id' | 'username' | 'role'>;

export interface SessionValidation {
	session: Session;
	user: SessionUser;
}

export async function createSession(
	userId: string,
	meta: { ip?: string | null; userAgent?: string | null } = {}
): Promise<{ token: string; session: Session }> {
	const token = generateSecret();
	const [session] = await db()
		.insert(sessions)
		.values({
			id: hashToken(token),
			userId,
			expiresAt: new Date(Date.now() + SESSION_LIFETIME_MS),
			ip: meta.ip ?? null,
			userAgent: meta.userAgent?.slice(0, 300) ?? null
		})
		.returning();
	return { token, session: session! };
}

/** Resolves a cookie's token to its session and user; null when unknown, expired or the user is disabled. */
export async function validateSessionToken(token: string): Promise<SessionValidation | null> {
	const id = hashToken(token);
	const [row] = await db()
		.select({
			session: sessions,
			user: { id: users.id, username: users.username, role: users.role, disabled: users.disabled }
		})
		.from(sessions)
		.innerJoin(users, eq(sessions.userId, users.id))
		.where(eq(sessions.id, id));
	if (!row) return null;
	const { session, user } = row;
	if (session.expiresAt.getTime() <= Date.now() || user.disabled) {
		await db().delete(sessions).where(eq(sessions.id, id));
		return null;
	}
	if (session.expiresAt.getTime() - Date.now() < RENEW_WHEN_LEFT_MS) {
		session.expiresAt = new Date(Date.now() + SESSION_LIFETIME_MS);
		await db().update(sessions).set({ expiresAt: session.expiresAt }).where(eq(sessions.id, id));
	}
	return { session, user: { id: user.id, username: user.username, role: user.role } };
}

export async function invalidateSession(sessionId: string): Promise<void> {
	await db().delete(sessions).where(eq(sessions.id, sessionId));
}

/** Signs a user out everywhere (logout everywhere, password reset, disable), optionally but for one session. */
export async function invalidateUserSessions(userId: string, exceptSessionId?: string): Promise<number> {
	const where = exceptSessionId
		? and(eq(sessions.userId, userId), ne(sessions.id, exceptSessionId))
		: eq(sessions.userId, userId);
	const gone = await db().delete(sessions).where(where).returning({ id: sessions.id });
	return gone.length;
}

export async function listUserSessions(userId: string): Promise<Session[]> {
	return db()
		.select()
		.from(sessions)
		.where(and(eq(sessions.userId, userId), gt(sessions.expiresAt, new Date())))
		.orderBy(desc(sessions.createdAt));
}

export async function deleteExpiredSessions(): Promise<void> {
	await db().delete(sessions).where(lt(sessions.expiresAt, new Date()));
}

export function setSessionCookie(cookies: Cookies, token: string, expiresAt: Date, secure: boolean): void {
	cookies.set(SESSION_COOKIE, token, {
		httpOnly: true,
		sameSite: 'lax',
		secure,
		path: '/',
		expires: expiresAt
	});
}

export function deleteSessionCookie(cookies: Cookies, secure: boolean): void {
	cookies.delete(SESSION_COOKIE, { httpOnly: true, sameSite: 'lax', secure, path: '/' });
}
