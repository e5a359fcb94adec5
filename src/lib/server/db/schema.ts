import { sql } from 'drizzle-orm';
import {
	type AnyPgColumn,
	bigserial,
	boolean,
	index,
	integer,
	jsonb,
	pgTable,
	text,
	timestamp,
	uuid
} from 'drizzle-orm/pg-core';

export const roles = ['viewer', 'operator', 'admin'] as const;
export type Role = (typeof roles)[number];

export const scopes = ['read', 'operate', 'admin'] as const;
export type Scope = (typeof scopes)[number];

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();

export const users = pgTable('users', {
	id: uuid('id').primaryKey().defaultRandom(),
	username: text('username').notNull().unique(),
	passwordHash: text('password_hash').notNull(),
	role: text('role', { enum: roles }).notNull(),
	disabled: boolean('disabled').notNull().default(false),
	createdAt: createdAt(),
	updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
});

/** A browser session. `id` is the SHA-256 of the cookie's token: the token itself is never stored. */
export const sessions = pgTable(
	'sessions',
	{
		id: text('id').primaryKey(),
		userId: uuid('user_id')
			.notNull()
			.references(() => users.id, { onDelete: 'cascade' }),
		expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
		createdAt: createdAt(),
		ip: text('ip'),
		userAgent: text('user_agent')
	},
	(t) => [index('sessions_user_id_idx').on(t.userId)]
);

/** An API token for scripts. Only the SHA-256 of the token is stored; the token is shown once. */
export const apiTokens = pgTable(
	'api_tokens',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		userId: uuid('user_id')
			.notNull()
			.references(() => users.id, { onDelete: 'cascade' }),
		name: text('name').notNull(),
		tokenHash: text('token_hash').notNull().unique(),
		// The first characters of the token, so an operator can tell tokens apart in lists.
		prefix: text('prefix').notNull(),
		scopes: text('scopes', { enum: scopes }).array().notNull(),
		expiresAt: timestamp('expires_at', { withTimezone: true }),
		createdAt: createdAt(),
		lastUsedAt: timestamp('last_used_at', { withTimezone: true }),
		revokedAt: timestamp('revoked_at', { withTimezone: true })
	},
	(t) => [index('api_tokens_user_id_idx').on(t.userId)]
);

/**
 * Failed sign-in counters, one row per key (`ip:<address>` or `user:<name>`). Kept in the database rather
 * than in memory so that several console instances and restarts share one view of an attack.
 */
export const loginThrottle = pgTable('login_throttle', {
	key: text('key').primaryKey(),
	failures: integer('failures').notNull().default(0),
	blockedUntil: timestamp('blocked_until', { withTimezone: true }),
	lastFailureAt: timestamp('last_failure_at', { withTimezone: true }).notNull().defaultNow()
});

export const auditResults = ['ok', 'denied', 'error'] as const;
export type AuditResult = (typeof auditResults)[number];

/** Append-only record of every mutating action: who, what, target, when, from where, result. */
export const auditLog = pgTable(
	'audit_log',
	{
		id: bigserial('id', { mode: 'number' }).primaryKey(),
		at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
		actorId: uuid('actor_id'),
		actorName: text('actor_name').notNull(),
		// 'session' or 'token:<token id>' or 'system': how the actor was authenticated.
		via: text('via').notNull(),
		action: text('action').notNull(),
		targetType: text('target_type'),
		targetId: text('target_id'),
		sourceIp: text('source_ip'),
		result: text('result', { enum: auditResults }).notNull(),
		details: jsonb('details')
			.$type<Record<string, unknown>>()
			.notNull()
			.default(sql`'{}'::jsonb`)
	},
	(t) => [
		index('audit_log_at_idx').on(t.at),
		index('audit_log_action_idx').on(t.action),
		index('audit_log_actor_idx').on(t.actorName)
	]
);

export type User = typeof users.$inferSelect;
export type Session = typeof sessions.$inferSelect;
export type ApiToken = typeof apiTokens.$inferSelect;
export type AuditRow = typeof auditLog.$inferSelect;

/** An SSH private key the console signs in to nodes with. The key is sealed (AES-256-GCM) under the master key. */
export const credentials = pgTable('credentials', {
	id: uuid('id').primaryKey(),
	name: text('name').notNull().unique(),
	keyType: text('key_type').notNull(),
	publicKey: text('public_key').notNull(),
	fingerprint: text('fingerprint').notNull(),
	sealedPrivateKey: text('sealed_private_key').notNull(),
	sealedPassphrase: text('sealed_passphrase'),
	createdAt: createdAt()
});

export const nodeKinds = ['server', 'appliance'] as const;
export const updatePolicies = ['full', 'security', 'manual'] as const;
export const hostKeyStatuses = ['unknown', 'pinned', 'changed'] as const;
export type HostKeyState = (typeof hostKeyStatuses)[number];

/** A machine the console keeps up to date. */
export const nodes = pgTable(
	'nodes',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		name: text('name').notNull().unique(),
		host: text('host').notNull(),
		port: integer('port').notNull().default(22),
		username: text('username').notNull().default('root'),
		credentialId: uuid('credential_id')
			.notNull()
			.references(() => credentials.id, { onDelete: 'restrict' }),
		/** Another node to reach this one through (a bastion). */
		jumpNodeId: uuid('jump_node_id').references((): AnyPgColumn => nodes.id, { onDelete: 'set null' }),
		kind: text('kind', { enum: nodeKinds }).notNull().default('server'),
		roles: text('roles')
			.array()
			.notNull()
			.default(sql`'{}'::text[]`),
		labels: jsonb('labels')
			.$type<Record<string, string>>()
			.notNull()
			.default(sql`'{}'::jsonb`),
		policy: text('policy', { enum: updatePolicies }).notNull().default('security'),
		controlPlane: boolean('control_plane').notNull().default(false),
		/** The pinned SHA-256 host key fingerprint; null until accepted. */
		hostKeyFingerprint: text('host_key_fingerprint'),
		hostKeyStatus: text('host_key_status', { enum: hostKeyStatuses }).notNull().default('unknown'),
		/** What the node presented when it did not match (unknown or changed), for an admin to review. */
		presentedFingerprint: text('presented_fingerprint'),
		reachable: boolean('reachable'),
		lastError: text('last_error'),
		lastCheckAt: timestamp('last_check_at', { withTimezone: true }),
		lastSeenAt: timestamp('last_seen_at', { withTimezone: true }),
		latencyMs: integer('latency_ms'),
		uname: text('uname'),
		createdAt: createdAt(),
		updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [index('nodes_credential_idx').on(t.credentialId)]
);

export type Credential = typeof credentials.$inferSelect;
export type Node = typeof nodes.$inferSelect;
