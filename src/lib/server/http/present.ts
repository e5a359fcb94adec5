import type { PublicApiToken } from '$lib/server/auth/api-tokens';
import type { PublicUser } from '$lib/server/auth/users';
import type { AuditRow } from '$lib/server/db/schema';

// The API speaks snake_case (API.md); these turn rows into its shapes.

export const presentUser = (u: PublicUser) => ({
	id: u.id,
	username: u.username,
	role: u.role,
	disabled: u.disabled,
	created_at: u.createdAt,
	updated_at: u.updatedAt
});

export const presentToken = (t: PublicApiToken) => ({
	id: t.id,
	name: t.name,
	prefix: t.prefix,
	scopes: t.scopes,
	expires_at: t.expiresAt,
	created_at: t.createdAt,
	last_used_at: t.lastUsedAt,
	revoked_at: t.revokedAt
});

export const presentAudit = (a: AuditRow) => ({
	id: a.id,
	at: a.at,
	actor: a.actorName,
	actor_id: a.actorId,
	via: a.via,
	action: a.action,
	target_type: a.targetType,
	target_id: a.targetId,
	source_ip: a.sourceIp,
	result: a.result,
	details: a.details
});
