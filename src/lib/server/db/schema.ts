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
	uniqueIndex,
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

// ---- The update engine: runs, tasks, steps, events (src/lib/server/engine/) ----

export const runStates = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;
export type RunState = (typeof runStates)[number];
export const taskStates = ['queued', 'running', 'succeeded', 'failed', 'rolled_back', 'cancelled', 'skipped'] as const;
export type TaskState = (typeof taskStates)[number];
export const stepStates = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export type StepState = (typeof stepStates)[number];
/** `do` runs forward, `undo` rolls back, `inspect` reconciles after a crash, `verify` checks health after a rollback. */
export const stepPhases = ['do', 'undo', 'inspect', 'verify'] as const;
export type StepPhase = (typeof stepPhases)[number];

export interface RunOptions {
	/** Tasks of this run executing at once. */
	concurrency: number;
	/** Pause dispatching when more than this many tasks failed. */
	maxFailures?: number;
	/** Pause dispatching when more than this percentage of the run's tasks failed. */
	maxFailurePercent?: number;
	stopOnFirstFailure?: boolean;
	/** Phases (see tasks.phase) in which one failure fails the whole run: control-plane nodes go first. */
	criticalPhases?: number[];
}

/** One operator intent: an Update All, a system update, a certificate rotation, a rollout stage. */
export const runs = pgTable(
	'runs',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		/** What operators call it (run #42); also the keyset for paging. */
		number: bigserial('number', { mode: 'number' }).notNull().unique(),
		/** Which flow the tasks execute (src/lib/server/engine/flows.ts). */
		kind: text('kind').notNull(),
		title: text('title').notNull(),
		state: text('state', { enum: runStates }).notNull().default('queued'),
		/** Why the run paused itself or ended, in words an operator reads. */
		reason: text('reason'),
		createdBy: text('created_by').notNull(),
		scope: jsonb('scope')
			.$type<Record<string, unknown>>()
			.notNull()
			.default(sql`'{}'::jsonb`),
		params: jsonb('params')
			.$type<Record<string, unknown>>()
			.notNull()
			.default(sql`'{}'::jsonb`),
		options: jsonb('options').$type<RunOptions>().notNull(),
		/** Set by retry-failed: the run whose failures this one retries. */
		parentRunId: uuid('parent_run_id').references((): AnyPgColumn => runs.id, { onDelete: 'set null' }),
		createdAt: createdAt(),
		startedAt: timestamp('started_at', { withTimezone: true }),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [index('runs_created_idx').on(t.createdAt), index('runs_state_idx').on(t.state)]
);

/** One node's share of a run: a pipeline of steps. */
export const tasks = pgTable(
	'tasks',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		runId: uuid('run_id')
			.notNull()
			.references(() => runs.id, { onDelete: 'cascade' }),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		/** Denormalised so that logs and pages still name the node after it is deleted. */
		nodeName: text('node_name').notNull(),
		/** Lower phases finish before higher ones start (control-plane nodes are phase 0). */
		phase: integer('phase').notNull().default(0),
		/** Order within the run, for dispatching and display. */
		seq: integer('seq').notNull(),
		state: text('state', { enum: taskStates }).notNull().default('queued'),
		/** A rollback itself failed: the node's state is not known to be good. */
		needsAttention: boolean('needs_attention').notNull().default(false),
		currentStep: text('current_step'),
		/** How many times an engine claimed this task (more than one after a crash). */
		attempt: integer('attempt').notNull().default(0),
		/** Set when a pg-boss job for the task was sent; the task is then in flight. */
		dispatchedAt: timestamp('dispatched_at', { withTimezone: true }),
		jobId: text('job_id'),
		/** The engine instance executing the task, and until when its claim holds without renewal. */
		leaseOwner: text('lease_owner'),
		leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
		/** What a flow's steps remember between steps (e.g. the commit before the update), for undo after a crash. */
		memo: jsonb('memo')
			.$type<Record<string, unknown>>()
			.notNull()
			.default(sql`'{}'::jsonb`),
		error: text('error'),
		startedAt: timestamp('started_at', { withTimezone: true }),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [
		index('tasks_run_idx').on(t.runId, t.phase, t.seq),
		index('tasks_node_idx').on(t.nodeId),
		index('tasks_lease_idx')
			.on(t.leaseExpiresAt)
			.where(sql`state = 'running'`),
		// The guarantee that a node never runs two tasks at once, whatever the run, kind or instance.
		uniqueIndex('tasks_one_running_per_node')
			.on(t.nodeId)
			.where(sql`state = 'running'`)
	]
);

export const taskSteps = pgTable(
	'task_steps',
	{
		id: bigserial('id', { mode: 'number' }).primaryKey(),
		taskId: uuid('task_id')
			.notNull()
			.references(() => tasks.id, { onDelete: 'cascade' }),
		name: text('name').notNull(),
		phase: text('phase', { enum: stepPhases }).notNull(),
		attempt: integer('attempt').notNull(),
		state: text('state', { enum: stepStates }).notNull(),
		exitCode: integer('exit_code'),
		error: text('error'),
		startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [index('task_steps_task_idx').on(t.taskId, t.id)]
);

/**
 * Append-only log of everything the engine does. Ids are handed out under an advisory lock so that they
 * commit in order: a reader that has seen id N has seen every id below it (SSE resumes rely on it).
 */
export const events = pgTable(
	'events',
	{
		id: bigserial('id', { mode: 'number' }).primaryKey(),
		at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
		type: text('type').notNull(),
		runId: uuid('run_id'),
		taskId: uuid('task_id'),
		nodeId: uuid('node_id'),
		data: jsonb('data')
			.$type<Record<string, unknown>>()
			.notNull()
			.default(sql`'{}'::jsonb`)
	},
	(t) => [index('events_run_idx').on(t.runId, t.id)]
);

export type Run = typeof runs.$inferSelect;
export type Task = typeof tasks.$inferSelect;
export type TaskStep = typeof taskSteps.$inferSelect;
export type EventRow = typeof events.$inferSelect;
