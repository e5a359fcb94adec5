import { and, desc, eq, isNull } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { apiTokens, users, type ApiToken, type Role, type Scope } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { highestLevel, levelAtLeast, lowerLevel, roleLevel, type Level } from './levels';
import type { Principal } from './principal';
import { generateSecret, hashToken } from './tokens';

/** Every token starts with this, so leaked tokens are easy to recognise in logs and by secret scanners. */
export const TOKEN_PREFIX = 'flt_';

export type PublicApiToken = Omit<ApiToken, 'tokenHash'>;

const publicColumns = {
	id: apiTokens.id,
	userId: apiTokens.userId,
	name: apiTokens.name,
	prefix: apiTokens.prefix,
	scopes: apiTokens.scopes,
	expiresAt: apiTokens.expiresAt,
	createdAt: apiTokens.createdAt,
	lastUsedAt: apiTokens.lastUsedAt,
	revokedAt: apiTokens.revokedAt
};

/** A token may carry only scopes its owner's role reaches: an operator cannot mint an admin token. */
export async function createApiToken(
	actor: Actor,
	owner: { id: string; role: Role },
	input: { name: string; scopes: Scope[]; expiresInDays?: number | null }
): Promise<{ token: string; record: PublicApiToken }> {
	const tooHigh = input.scopes.filter((s) => !levelAtLeast(roleLevel[owner.role], s));
	if (tooHigh.length) {
		throw new ServiceError('forbidden', `Your role (${owner.role}) cannot grant the ${tooHigh.join(', ')} scope`, {
			scopes: `${tooHigh.join(', ')} is above your role`
		});
	}
	const userId = owner.id;
	const token = TOKEN_PREFIX + generateSecret();
	const expiresAt = input.expiresInDays ? new Date(Date.now() + input.expiresInDays * 86_400_000) : null;
	const [record] = await db()
		.insert(apiTokens)
		.values({
			userId,
			name: input.name,
			tokenHash: hashToken(token),
			prefix: token.slice(0, TOKEN_PREFIX.length + 6),
			scopes: [...new Set(input.scopes)],
			expiresAt
		})
		.returning(publicColumns);
	await recordAudit(actor, {
		action: 'token.create',
		targetType: 'api_token',
		targetId: record!.id,
		details: { name: record!.name, scopes: record!.scopes, expires_at: record!.expiresAt }
	});
	return { token, record: record! };
}

export async function listApiTokens(userId: string): Promise<PublicApiToken[]> {
	return db()
		.select(publicColumns)
		.from(apiTokens)
		.where(eq(apiTokens.userId, userId))
		.orderBy(desc(apiTokens.createdAt));
}

/** Revokes one of the user's own tokens; false when there is no such live token. */
export async function revokeApiToken(actor: Actor, userId: string, tokenId: string): Promise<boolean> {
	const revoked = await db()
		.update(apiTokens)
		.set({ revokedAt: new Date() })
		.where(and(eq(apiTokens.id, tokenId), eq(apiTokens.userId, userId), isNull(apiTokens.revokedAt)))
		.returning({ id: apiTokens.id });
	if (!revoked.length) return false;
	await recordAudit(actor, { action: 'token.revoke', targetType: 'api_token', targetId: tokenId });
	return true;
}

/** Resolves a bearer token; null when unknown, revoked, expired, or its owner is disabled. */
export async function authenticateApiToken(token: string): Promise<Principal | null> {
	if (!token.startsWith(TOKEN_PREFIX)) return null;
	const [row] = await db()
		.select({ token: apiTokens, user: users })
		.from(apiTokens)
		.innerJoin(users, eq(apiTokens.userId, users.id))
		.where(eq(apiTokens.tokenHash, hashToken(token)));
	if (!row || row.token.revokedAt || row.user.disabled) return null;
	if (row.token.expiresAt && row.token.expiresAt.getTime() <= Date.now()) return null;
	const scopeLevel = highestLevel(row.token.scopes);
	if (!scopeLevel) return null;
	// Last use is a hint for operators, not an audit trail: one write a minute per token is plenty.
	if (!row.token.lastUsedAt || Date.now() - row.token.lastUsedAt.getTime() > 60_000) {
		await db().update(apiTokens).set({ lastUsedAt: new Date() }).where(eq(apiTokens.id, row.token.id));
	}
	const level: Level = lowerLevel(scopeLevel, roleLevel[row.user.role]);
	return {
		via: 'token',
		user: { id: row.user.id, username: row.user.username, role: row.user.role },
		level,
		tokenId: row.token.id
	};
}
