import { sql } from 'drizzle-orm';
import {
	agentJobStates,
	applianceImageStates,
	applianceUpdateStates,
	rolloutStates,
	runStates,
	stepPhases,
	stepStates,
	taskStates,
	keyRotationStates,
	keyRotationPhases,
	keyRotationNodeStates
} from '$lib/states';

export { keyRotationStates, keyRotationPhases, keyRotationNodeStates };
import {
	type AnyPgColumn,
	bigint,
	bigserial,
	boolean,
	index,
	integer,
	jsonb,
	pgTable,
	primaryKey,
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
		/** Null: the node takes its roles' default policy (docs/system-updates.md, "Policies"). */
		policy: text('policy', { enum: updatePolicies }),
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

// One list of states for the browser, the schema and the engine ($lib/states.ts).
export { runStates, taskStates, stepStates, stepPhases };
export type RunState = (typeof runStates)[number];
export type TaskState = (typeof taskStates)[number];
export type StepState = (typeof stepStates)[number];
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

// ---- Code Sync: roles, the commits notified for them, and what each node runs (src/lib/server/codesync/) ----

export const deployMethods = ['git', 'push', 'commands'] as const;
export type DeployMethod = (typeof deployMethods)[number];

/** How a role's health is judged on a node after a restart, and by the health sweep. */
export type HealthCheck =
	/** `systemctl is-active` for each of the role's units. */
	| { type: 'units' }
	/** A program run on the node (argv, each argument quoted); exit status 0 is healthy. */
	| { type: 'command'; command: string[] }
	/** An HTTP(S) URL fetched on the node itself with curl; a 2xx answer is healthy. */
	| { type: 'http'; url: string };

/** One program of a `commands` role's update (argv, each argument quoted) and how long it may run. */
export interface DeployCommand {
	argv: string[];
	deadline_seconds: number;
}

/** A `commands` role's update, in the order it runs; `rollback` runs when any of them (or the health) fails. */
export interface DeployCommands {
	backup: DeployCommand;
	pull: DeployCommand;
	migrate: DeployCommand;
	smoke: DeployCommand;
	switch: DeployCommand;
	rollback?: DeployCommand;
}

/**
 * The signers a role's target commit (or tag) must be signed by: lines of git's allowed signers file (SSH keys)
 * and armored OpenPGP public keys; at least one of the two.
 */
export interface RoleSignatures {
	allowed_signers?: string[];
	openpgp_keys?: string[];
}

/** The pre-flight snapshot of a role (docs/code-sync.md, "Pre-flight"). */
export interface RoleSnapshot {
	data_paths: string[];
	keep: number;
	deadline_seconds: number;
	/** argv that puts a snapshot back on a rollback (`FLOTILLA_SNAPSHOT` names it); empty: none. */
	restore_command: string[];
}

/** Commands run around a role's restart so that it stops work cleanly first and picks it up after. */
export interface RoleQuiesce {
	quiesce: DeployCommand;
	resume: DeployCommand;
}

/** What a node runs (e.g. `backend`), and how Code Sync deploys it. */
export const codeRoles = pgTable('code_roles', {
	name: text('name').primaryKey(),
	description: text('description').notNull().default(''),
	method: text('method', { enum: deployMethods }).notNull().default('git'),
	/**
	 * On the node: the git checkout (`git`), the folder holding `releases/` and `current` (`push`), or the
	 * folder the commands run in (`commands`).
	 */
	path: text('path').notNull(),
	/** `push` only: the console's own git checkout of the role, archived at the target commit. */
	sourceRepo: text('source_repo'),
	/** `commands` only: the programs of its update. */
	commands: jsonb('commands').$type<DeployCommands>(),
	/** The branch whose commits auto-update applies; notifications may name it. */
	branch: text('branch').notNull().default('main'),
	/** A glob of tags (`v*`): the role's latest is then the highest semantic version notified with such a tag. */
	followTags: text('follow_tags'),
	units: text('units')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** argv run in the checkout (or release) after switching; none when empty. */
	installCommand: text('install_command')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** argv that restarts the role; `systemctl restart <units>` when empty. */
	restartCommand: text('restart_command')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	health: jsonb('health').$type<HealthCheck>().notNull().default({ type: 'units' }),
	/** How long verification keeps retrying the health check after a restart. */
	healthTimeoutSeconds: integer('health_timeout_seconds').notNull().default(30),
	/** Roles with a lower order are updated first on a node. */
	sortOrder: integer('sort_order').notNull().default(100),
	latestCommit: text('latest_commit'),
	latestMessage: text('latest_message'),
	latestAuthor: text('latest_author'),
	latestAt: timestamp('latest_at', { withTimezone: true }),
	/** The system-update policy of this role's nodes that have none of their own (docs/system-updates.md). */
	updatePolicy: text('update_policy', { enum: updatePolicies }),
	autoUpdate: boolean('auto_update').notNull().default(false),
	autoUpdateIntervalMinutes: integer('auto_update_interval_minutes').notNull().default(60),
	autoUpdateMaxFailuresPerDay: integer('auto_update_max_failures_per_day').notNull().default(3),
	/** Set when auto-update turned itself off (too many failures), in words for the operator. */
	autoUpdateDisabledReason: text('auto_update_disabled_reason'),
	autoUpdateLastAt: timestamp('auto_update_last_at', { withTimezone: true }),
	/** Null: any commit deploys. Else the target (or the tag naming it) must be signed by one of these keys. */
	signatures: jsonb('signatures').$type<RoleSignatures>(),
	/** A program that must exit 0 before the node is touched; otherwise the node is skipped. */
	readinessCheck: jsonb('readiness_check').$type<DeployCommand>(),
	snapshot: jsonb('snapshot').$type<RoleSnapshot>(),
	quiesce: jsonb('quiesce').$type<RoleQuiesce>(),
	createdAt: createdAt(),
	updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
});

/** Every commit a notification announced for a role, newest last; the role's latest is in code_roles. */
export const codeCommits = pgTable(
	'code_commits',
	{
		id: bigserial('id', { mode: 'number' }).primaryKey(),
		role: text('role')
			.notNull()
			.references(() => codeRoles.name, { onDelete: 'cascade', onUpdate: 'cascade' }),
		commit: text('commit').notNull(),
		branch: text('branch'),
		/** The tag the notification named for this commit, if any (roles that follow tags read it). */
		tag: text('tag'),
		message: text('message'),
		author: text('author'),
		notifiedBy: text('notified_by').notNull(),
		notifiedAt: timestamp('notified_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [uniqueIndex('code_commits_role_commit').on(t.role, t.commit), index('code_commits_role_idx').on(t.role, t.id)]
);

/** Per node and role: the commit deployed there, and the last failure to move it. */
export const nodeCodeVersions = pgTable(
	'node_code_versions',
	{
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		role: text('role')
			.notNull()
			.references(() => codeRoles.name, { onDelete: 'cascade', onUpdate: 'cascade' }),
		commit: text('commit'),
		/** The commit before the last sync: what a rollback went back to. */
		previousCommit: text('previous_commit'),
		syncedAt: timestamp('synced_at', { withTimezone: true }),
		/** The last update of this role on this node failed; cleared by the next success or mark-synced. */
		lastError: text('last_error'),
		failedCommit: text('failed_commit'),
		failedAt: timestamp('failed_at', { withTimezone: true }),
		failedRunId: uuid('failed_run_id'),
		/** What the health sweep last found: the role's health check on the node, and why it failed. */
		healthy: boolean('healthy'),
		healthError: text('health_error'),
		healthCheckedAt: timestamp('health_checked_at', { withTimezone: true })
	},
	(t) => [primaryKey({ columns: [t.nodeId, t.role] })]
);

/**
 * Whether a node's fetched repository held a `git` role's target commit, as the last Code Sync fetch there (or
 * a checkout that could not find it) found: the plan flags a target some node is known to lack
 * (docs/code-sync.md, "Update All"). One row per node and role, so it holds the last commit looked for there.
 */
export const roleCommitChecks = pgTable(
	'role_commit_checks',
	{
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		role: text('role')
			.notNull()
			.references(() => codeRoles.name, { onDelete: 'cascade', onUpdate: 'cascade' }),
		commit: text('commit').notNull(),
		found: boolean('found').notNull(),
		checkedAt: timestamp('checked_at', { withTimezone: true }).notNull()
	},
	(t) => [primaryKey({ columns: [t.nodeId, t.role] }), index('role_commit_checks_role_commit').on(t.role, t.commit)]
);

export type CodeRole = typeof codeRoles.$inferSelect;
export type CodeCommit = typeof codeCommits.$inferSelect;
export type NodeCodeVersion = typeof nodeCodeVersions.$inferSelect;

/** A signed release manifest (docs/releases.md), accepted only after its signature verified. */
export const releases = pgTable(
	'releases',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		version: text('version').notNull(),
		sha: text('sha').notNull(),
		channel: text('channel', { enum: ['stable', 'beta'] }).notNull(),
		migrationsRequired: boolean('migrations_required').notNull(),
		breakingChanges: text('breaking_changes'),
		releasedAt: timestamp('released_at', { withTimezone: true }).notNull(),
		signature: text('signature').notNull(),
		/** `ed25519` or `hmac-sha256`, and which configured key verified the signature. */
		algorithm: text('algorithm').notNull(),
		verifiedBy: text('verified_by').notNull(),
		/** The manifest exactly as uploaded, so its signature can be checked again by anyone. */
		manifest: jsonb('manifest').$type<Record<string, unknown>>().notNull(),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt()
	},
	(t) => [uniqueIndex('releases_version').on(t.version), index('releases_sha_idx').on(t.sha)]
);

export type RolloutState = (typeof rolloutStates)[number];

export interface RolloutTarget {
	channel?: 'stable' | 'beta';
	roles?: string[];
	labels?: string[];
	nodes?: string[];
}

/** One stage as planned and as it went. */
export interface RolloutStage {
	percent: number;
	bakeSeconds: number;
	state: 'pending' | 'running' | 'done';
	runId?: string;
	startedAt?: string;
	endedAt?: string;
	/** Failures an operator already saw when resuming: they do not pause the rollout again. */
	acknowledgedFailures?: number;
}

/** A release sent to a target set in stages (docs/releases.md, "Rollouts"). */
export const rollouts = pgTable(
	'rollouts',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		number: bigserial('number', { mode: 'number' }).notNull().unique(),
		releaseId: uuid('release_id')
			.notNull()
			.references(() => releases.id, { onDelete: 'restrict' }),
		target: jsonb('target').$type<RolloutTarget>().notNull(),
		strategy: text('strategy', { enum: ['immediate', 'staged', 'canary'] }).notNull(),
		stages: jsonb('stages').$type<RolloutStage[]>().notNull(),
		/** The stage in progress (or waiting): -1 before the first starts. */
		currentStage: integer('current_stage').notNull().default(-1),
		failureThresholdPercent: integer('failure_threshold_percent').notNull(),
		minFinishedNodes: integer('min_finished_nodes').notNull(),
		concurrency: integer('concurrency').notNull(),
		requireApproval: boolean('require_approval').notNull(),
		/** Each node is updated only inside its maintenance window (System Updates' windows). */
		respectWindows: boolean('respect_windows').notNull().default(false),
		startAt: timestamp('start_at', { withTimezone: true }),
		state: text('state', { enum: rolloutStates }).notNull(),
		/** Why it paused, failed or ended, in words an operator reads. */
		reason: text('reason'),
		/** The run that takes the fleet back (fleet rollback). */
		rollbackRunId: uuid('rollback_run_id'),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt(),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [index('rollouts_state_idx').on(t.state)]
);

/** A node's part in a rollout: its stage, what it ran before, how its update went. */
export const rolloutNodes = pgTable(
	'rollout_nodes',
	{
		rolloutId: uuid('rollout_id')
			.notNull()
			.references(() => rollouts.id, { onDelete: 'cascade' }),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		nodeName: text('node_name').notNull(),
		stage: integer('stage').notNull(),
		/** pending → the stage's task states (succeeded, failed, …); `reverted` after a fleet rollback. */
		state: text('state').notNull().default('pending'),
		/** Per role, the commit the node ran before this rollout moved it. */
		previous: jsonb('previous').$type<Record<string, string | null>>(),
		error: text('error'),
		updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [primaryKey({ columns: [t.rolloutId, t.nodeId] }), index('rollout_nodes_node_idx').on(t.nodeId)]
);

export type Release = typeof releases.$inferSelect;
export type Rollout = typeof rollouts.$inferSelect;
export type RolloutNode = typeof rolloutNodes.$inferSelect;

// System Updates (docs/system-updates.md): apt scans, holds, maintenance windows, the soak gate's history.

/** What the last scan of a node found (one row per node scanned at least once). */
export const sysNodeScans = pgTable('sys_node_scans', {
	nodeId: uuid('node_id')
		.primaryKey()
		.references(() => nodes.id, { onDelete: 'cascade' }),
	/** When the last successful scan read the node. */
	scannedAt: timestamp('scanned_at', { withTimezone: true }),
	pendingCount: integer('pending_count').notNull().default(0),
	securityCount: integer('security_count').notNull().default(0),
	rebootRequired: boolean('reboot_required').notNull().default(false),
	/** `/var/run/reboot-required.pkgs`: the packages that asked for the reboot. */
	rebootPackages: text('reboot_packages')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** Services running deleted libraries, as `needrestart -b` reports them; null when needrestart is not installed. */
	servicesToRestart: text('services_to_restart').array(),
	/** `apt-mark showhold` on the node. */
	held: text('held')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** The last scan's failure (unreachable, apt failed); cleared by the next success. */
	lastError: text('last_error'),
	lastErrorAt: timestamp('last_error_at', { withTimezone: true }),
	lastRunId: uuid('last_run_id'),
	/** The last system update of the node failed, and why; cleared by the next one that succeeds. */
	updateError: text('update_error'),
	updateFailedAt: timestamp('update_failed_at', { withTimezone: true }),
	updateRunId: uuid('update_run_id')
});

/** The packages the last scan of a node found upgradable. */
export const sysPendingPackages = pgTable(
	'sys_pending_packages',
	{
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		name: text('name').notNull(),
		arch: text('arch').notNull(),
		installed: text('installed').notNull(),
		candidate: text('candidate').notNull(),
		suites: text('suites').array().notNull(),
		security: boolean('security').notNull(),
		/** Why it counts as a security update: the pocket that offers it. */
		securityReason: text('security_reason')
	},
	(t) => [primaryKey({ columns: [t.nodeId, t.name, t.arch] })]
);

/** When any node's scan first offered each candidate version: the fleet's own history, for the soak gate. */
export const sysCandidateVersions = pgTable(
	'sys_candidate_versions',
	{
		name: text('name').notNull(),
		arch: text('arch').notNull(),
		version: text('version').notNull(),
		security: boolean('security').notNull(),
		firstSeenAt: timestamp('first_seen_at', { withTimezone: true }).notNull().defaultNow(),
		firstNodeId: uuid('first_node_id').references(() => nodes.id, { onDelete: 'set null' })
	},
	(t) => [primaryKey({ columns: [t.name, t.arch, t.version] })]
);

export const sysHoldScopes = ['node', 'role'] as const;

/** Packages never upgraded automatically on a node or on every node of a role (shell-style patterns). */
export const sysHolds = pgTable(
	'sys_holds',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		scope: text('scope', { enum: sysHoldScopes }).notNull(),
		/** A node id, or a role name. */
		target: text('target').notNull(),
		pattern: text('pattern').notNull(),
		reason: text('reason'),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt()
	},
	(t) => [uniqueIndex('sys_holds_unique').on(t.scope, t.target, t.pattern)]
);

/** When the scheduled scan last fired (one row per schedule), so that several consoles fire it once. */
export const sysSchedules = pgTable('sys_schedules', {
	name: text('name').primaryKey(),
	lastFiredAt: timestamp('last_fired_at', { withTimezone: true }).notNull(),
	/** Set by an admin on the page: overrides the configured cron (`off` for none) and its time zone. */
	cron: text('cron'),
	timeZone: text('time_zone')
});

export const sysRebootStates = ['down', 'back', 'failed'] as const;

/**
 * Each reboot a system update run makes, as it happens: a node that does not come back stops the reboots of
 * its roles' other nodes in the same run (docs/system-updates.md, "Reboots").
 */
export const sysReboots = pgTable(
	'sys_reboots',
	{
		runId: uuid('run_id').notNull(),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		nodeName: text('node_name').notNull(),
		roles: text('roles').array().notNull(),
		state: text('state', { enum: sysRebootStates }).notNull(),
		reason: text('reason'),
		startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [primaryKey({ columns: [t.runId, t.nodeId] })]
);

export const sysWindowScopes = ['node', 'role', 'label'] as const;

/**
 * Maintenance windows (docs/system-updates.md): when automatic updates and pending reboots may happen on a node.
 * A node's own window wins over its roles', which win over its labels'.
 */
export const sysWindows = pgTable(
	'sys_windows',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		scope: text('scope', { enum: sysWindowScopes }).notNull(),
		/** A node id, a role name, or a label as `key=value`. */
		target: text('target').notNull(),
		/** Wall-clock `HH:MM` in `time_zone`; an end at or before the start runs past midnight. */
		start: text('start').notNull(),
		end: text('end').notNull(),
		timeZone: text('time_zone').notNull(),
		/** 0 = Sunday … 6 = Saturday: the days it opens on. */
		days: integer('days').array().notNull(),
		/** "Skip the next window": shut until this moment. */
		skipUntil: timestamp('skip_until', { withTimezone: true }),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt()
	},
	(t) => [uniqueIndex('sys_windows_target').on(t.scope, t.target)]
);

export type SysNodeScan = typeof sysNodeScans.$inferSelect;
export type SysPendingPackage = typeof sysPendingPackages.$inferSelect;
export type SysHold = typeof sysHolds.$inferSelect;
export type SysWindow = typeof sysWindows.$inferSelect;
// ---- TLS certificates: per-role settings, the inventory, the internal CA (src/lib/server/certs/) ----

/** A TLS endpoint a role serves on its nodes: the console handshakes with `<node host>:<port>`. */
export interface CertEndpoint {
	port: number;
	/** The name sent as SNI; the node's host when it is a name, none when it is an address. */
	servername?: string;
}

export const certIssuers = ['ca', 'self-signed'] as const;
export type CertIssuer = (typeof certIssuers)[number];

/** Where a role keeps its certificate on its nodes, where it serves it, and how it is renewed. */
export const certRoles = pgTable('cert_roles', {
	role: text('role').primaryKey(),
	certPath: text('cert_path').notNull(),
	keyPath: text('key_path').notNull(),
	endpoints: jsonb('endpoints').$type<CertEndpoint[]>().notNull().default([]),
	/** argv that makes the role serve the files on disk (a graceful reload, or a restart where nothing else works). */
	reloadCommand: text('reload_command').array().notNull(),
	/** Who signs the role's new certificates at rotation: the internal CA, or the node itself (self-signed). */
	issuer: text('issuer', { enum: certIssuers }).notNull().default('ca'),
	/** Validity of the certificates the internal CA issues for the role. */
	validityDays: integer('validity_days').notNull().default(90),
	/** Subject alternative names added to the node's own name and address (DNS names or IP addresses). */
	extraSans: text('extra_sans')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** Rotation phases: after the control plane, roles with a lower order go first. */
	sortOrder: integer('sort_order').notNull().default(100),
	createdAt: createdAt(),
	updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
});

export const certSources = ['endpoint', 'file', 'report'] as const;
export type CertSource = (typeof certSources)[number];

/** The inventory: what a node serves on an endpoint, keeps in a file, or reported itself, as last seen. */
export const certificates = pgTable(
	'certificates',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		source: text('source', { enum: certSources }).notNull(),
		/** A path on the node, or `host:port`, followed by ` (servername)` when the endpoint is reached by that SNI name. */
		location: text('location').notNull(),
		role: text('role'),
		servername: text('servername'),
		/** Null while the certificate could not be read (see `error`); the last good reading is kept otherwise. */
		pem: text('pem'),
		fingerprint: text('fingerprint'),
		subject: text('subject'),
		issuer: text('issuer'),
		sans: text('sans')
			.array()
			.notNull()
			.default(sql`'{}'::text[]`),
		serial: text('serial'),
		notBefore: timestamp('not_before', { withTimezone: true }),
		notAfter: timestamp('not_after', { withTimezone: true }),
		keyType: text('key_type'),
		keyBits: integer('key_bits'),
		selfSigned: boolean('self_signed'),
		/** Whether the chain verifies against the console's trusted CAs; `chainError` says why not. */
		chainVerified: boolean('chain_verified'),
		chainError: text('chain_error'),
		/** The file on disk and what the endpoint serves differ (a rotation that was never reloaded). */
		mismatch: boolean('mismatch').notNull().default(false),
		/** Why the last look failed (endpoint unreachable, file missing); the last good reading stays. */
		error: text('error'),
		checkedAt: timestamp('checked_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [
		uniqueIndex('certificates_node_location').on(t.nodeId, t.source, t.location),
		index('certificates_not_after_idx').on(t.notAfter)
	]
);

/** A CA the console trusts when it verifies chains; with a sealed key, the internal CA that issues certificates. */
export const certAuthorities = pgTable('cert_authorities', {
	id: uuid('id').primaryKey().defaultRandom(),
	name: text('name').notNull().unique(),
	certPem: text('cert_pem').notNull(),
	fingerprint: text('fingerprint').notNull().unique(),
	/** The CA's private key, sealed under the master key (crypto/secret-box); null for a CA only trusted. */
	sealedKey: text('sealed_key'),
	/** The one CA that issues; at most one row. */
	issuing: boolean('issuing').notNull().default(false),
	notAfter: timestamp('not_after', { withTimezone: true }).notNull(),
	createdAt: createdAt()
});

/** Every certificate the internal CA issued: the inventory that revocation and the CRL come from. */
export const issuedCertificates = pgTable(
	'issued_certificates',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		caId: uuid('ca_id')
			.notNull()
			.references(() => certAuthorities.id, { onDelete: 'restrict' }),
		serial: text('serial').notNull(),
		nodeId: uuid('node_id').references(() => nodes.id, { onDelete: 'set null' }),
		nodeName: text('node_name').notNull(),
		role: text('role'),
		subject: text('subject').notNull(),
		sans: text('sans').array().notNull(),
		fingerprint: text('fingerprint').notNull(),
		pem: text('pem').notNull(),
		notBefore: timestamp('not_before', { withTimezone: true }).notNull(),
		notAfter: timestamp('not_after', { withTimezone: true }).notNull(),
		runId: uuid('run_id'),
		revokedAt: timestamp('revoked_at', { withTimezone: true }),
		revokeReason: text('revoke_reason'),
		createdAt: createdAt()
	},
	(t) => [uniqueIndex('issued_certificates_ca_serial').on(t.caId, t.serial)]
);

export type CertRole = typeof certRoles.$inferSelect;
export type Certificate = typeof certificates.$inferSelect;
export type CertAuthority = typeof certAuthorities.$inferSelect;
export type IssuedCertificate = typeof issuedCertificates.$inferSelect;

/*
 * Integrations (notify/): channels that events are sent to, and each delivery of an event to a channel.
 */

/** A place notifications go: a signed JSON webhook or a Slack-compatible incoming webhook. */
export const notifyChannels = pgTable('notify_channels', {
	id: uuid('id').primaryKey().defaultRandom(),
	name: text('name').notNull().unique(),
	kind: text('kind', { enum: ['webhook', 'slack'] }).notNull(),
	/** The target URL, sealed (a Slack webhook URL is itself a credential). */
	sealedUrl: text('sealed_url').notNull(),
	/** Scheme, host and port only: what pages show of the URL. */
	urlOrigin: text('url_origin').notNull(),
	/** The HMAC key of a webhook, sealed; null for Slack. */
	sealedSecret: text('sealed_secret'),
	/** The event kinds this channel receives. */
	events: text('events').array().notNull(),
	/** Thresholds of the "past N" rules. */
	thresholds: jsonb('thresholds')
		.$type<{ securityDays: number; rebootDays: number; unreachableMinutes: number }>()
		.notNull(),
	enabled: boolean('enabled').notNull().default(true),
	createdAt: createdAt()
});

/** One event for one channel: unique, so that several consoles hearing the same event send it once. */
export const notifyDeliveries = pgTable(
	'notify_deliveries',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		channelId: uuid('channel_id')
			.notNull()
			.references(() => notifyChannels.id, { onDelete: 'cascade' }),
		eventKey: text('event_key').notNull(),
		kind: text('kind').notNull(),
		payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
		state: text('state', { enum: ['queued', 'delivered', 'failed'] })
			.notNull()
			.default('queued'),
		attempts: integer('attempts').notNull().default(0),
		lastStatus: integer('last_status'),
		lastResponse: text('last_response'),
		lastAttemptAt: timestamp('last_attempt_at', { withTimezone: true }),
		deliveredAt: timestamp('delivered_at', { withTimezone: true }),
		createdAt: createdAt()
	},
	(t) => [
		uniqueIndex('notify_deliveries_channel_event').on(t.channelId, t.eventKey),
		index('notify_deliveries_channel_created').on(t.channelId, t.createdAt)
	]
);

/** The integrations' one settings row (id 1), and how far the event log has been read for notifications. */
export const notifySettings = pgTable('notify_settings', {
	id: integer('id').primaryKey(),
	/** Targets in loopback, link-local or private ranges are refused unless an admin allows them here. */
	allowPrivateTargets: boolean('allow_private_targets').notNull().default(false),
	eventCursor: bigint('event_cursor', { mode: 'number' }).notNull().default(0)
});

export type NotifyChannel = typeof notifyChannels.$inferSelect;
export type NotifyDelivery = typeof notifyDeliveries.$inferSelect;

/** Conditions the notifications watch (a node unreachable, updates pending), from when each was first seen. */
export const notifyConditions = pgTable('notify_conditions', {
	key: text('key').primaryKey(),
	since: timestamp('since', { withTimezone: true }).notNull().defaultNow()
});

/**
 * Provisioning (docs/provisioning.md): what a role needs on a fresh node beside its code. One row per role
 * that can be provisioned; secrets are sealed under the master key, per role and name (crypto/secret-box).
 */
export interface UnitTemplate {
	/** The unit's file name in /etc/systemd/system, e.g. `backend.service`. */
	name: string;
	template: string;
}

export const roleProvisioning = pgTable('role_provisioning', {
	role: text('role')
		.primaryKey()
		.references(() => codeRoles.name, { onDelete: 'cascade', onUpdate: 'cascade' }),
	/** Where a git role's first checkout is cloned from on a fresh node. */
	repoUrl: text('repo_url'),
	packages: text('packages')
		.array()
		.notNull()
		.default(sql`'{}'::text[]`),
	/** The role's service account; the role's name when null. */
	serviceUser: text('service_user'),
	/** Rendered to /etc/<role>/<role>.env; `{{ secret.NAME }}` takes a sealed secret. */
	envTemplate: text('env_template').notNull().default(''),
	/** Secret name → sealed value. */
	secrets: jsonb('secrets').$type<Record<string, string>>().notNull().default({}),
	/** Installed in this order and started in this order (the role's start order). */
	unitTemplates: jsonb('unit_templates').$type<UnitTemplate[]>().notNull().default([]),
	createdAt: createdAt(),
	updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
});

/** Which role each node was provisioned for, and whether its system dependencies are in. */
export const nodeProvisioning = pgTable(
	'node_provisioning',
	{
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		role: text('role').notNull(),
		depsInstalledAt: timestamp('deps_installed_at', { withTimezone: true }),
		provisionedAt: timestamp('provisioned_at', { withTimezone: true }),
		lastRunId: uuid('last_run_id'),
		lastError: text('last_error'),
		updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [primaryKey({ columns: [t.nodeId, t.role] })]
);

export type RoleProvisioning = typeof roleProvisioning.$inferSelect;
export type NodeProvisioning = typeof nodeProvisioning.$inferSelect;

export type KeyRotationState = (typeof keyRotationStates)[number];
export type KeyRotationPhase = (typeof keyRotationPhases)[number];

/** One phase of a key rotation as it ran: an engine run across every node in scope (docs/ssh-key-rotation.md). */
export interface KeyRotationPhaseRecord {
	phase: KeyRotationPhase;
	runId: string;
	state: 'running' | 'passed' | 'failed';
	nodes: number;
	/** Nodes the phase could not finish on, and why. */
	problems: { node: string; reason: string; unreachable: boolean }[];
	startedAt: string;
	endedAt: string | null;
}

/** What a host accepts today, as the dry run before K1 found it. */
export interface KeySurvey {
	consoleKeys: { fingerprint: string; credential: string; comment: string }[];
	otherKeys: { fingerprint: string; type: string; comment: string }[];
	passwordLogin: 'yes' | 'no' | 'unknown';
	passwordSource: 'sshd -T' | 'sshd_config' | null;
	mode: string;
	owner: string;
}

/**
 * A rotation of the console's SSH key on the nodes that use it, phase by phase (K1–K6, docs/ssh-key-rotation.md).
 * The old credential is kept (retired) while any node may still need it.
 */
export const keyRotations = pgTable('key_rotations', {
	id: uuid('id').primaryKey().defaultRandom(),
	number: bigserial('number', { mode: 'number' }).notNull().unique(),
	state: text('state', { enum: keyRotationStates }).notNull().default('running'),
	phase: text('phase', { enum: keyRotationPhases }).notNull().default('survey'),
	phaseRunId: uuid('phase_run_id'),
	/** The run that finishes nodes that were unreachable during the main phases. */
	catchUpRunId: uuid('catch_up_run_id'),
	/** Null once an admin deleted the credential after the rotation no longer needed it. */
	oldCredentialId: uuid('old_credential_id').references(() => credentials.id, { onDelete: 'set null' }),
	newCredentialId: uuid('new_credential_id').references(() => credentials.id, { onDelete: 'set null' }),
	safetyNetCredentialId: uuid('safety_net_credential_id').references(() => credentials.id, { onDelete: 'set null' }),
	removeSafetyNet: boolean('remove_safety_net').notNull().default(false),
	phases: jsonb('phases')
		.$type<KeyRotationPhaseRecord[]>()
		.notNull()
		.default(sql`'[]'::jsonb`),
	abortedPhase: text('aborted_phase'),
	abortReason: text('abort_reason'),
	createdBy: text('created_by').notNull(),
	createdAt: createdAt(),
	updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
	endedAt: timestamp('ended_at', { withTimezone: true })
});

/** After an abort: `cleanup` (the rotation's lines still to be taken off, e.g. while the node is away), `cleaned`. */
export type KeyRotationNodeState = (typeof keyRotationNodeStates)[number];

/** Each node in a rotation's scope: how far it got, and what it accepted before. */
export const keyRotationNodes = pgTable(
	'key_rotation_nodes',
	{
		rotationId: uuid('rotation_id')
			.notNull()
			.references(() => keyRotations.id, { onDelete: 'cascade' }),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		nodeName: text('node_name').notNull(),
		state: text('state', { enum: keyRotationNodeStates }).notNull().default('active'),
		/** The last phase finished on this node. */
		reached: text('reached', { enum: keyRotationPhases }),
		survey: jsonb('survey').$type<KeySurvey>(),
		error: text('error'),
		deferredAt: timestamp('deferred_at', { withTimezone: true })
	},
	(t) => [primaryKey({ columns: [t.rotationId, t.nodeId] }), index('key_rotation_nodes_node_idx').on(t.nodeId)]
);

export type KeyRotation = typeof keyRotations.$inferSelect;
export type KeyRotationNode = typeof keyRotationNodes.$inferSelect;

// A/B appliance updates (docs/appliances.md): images carried by releases, per-appliance update states, fallbacks.

/** A release's system image for appliances, stored by the console (streamed, sha256 and size checked). */
export const applianceImages = pgTable(
	'appliance_images',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		releaseId: uuid('release_id')
			.notNull()
			.references(() => releases.id, { onDelete: 'restrict' }),
		sha256: text('sha256').notNull(),
		size: bigint('size', { mode: 'number' }).notNull(),
		/** Ed25519 over the sha256 as 64 lowercase hex characters, in hex; checked again on every appliance. */
		signature: text('signature').notNull(),
		verifiedBy: text('verified_by').notNull(),
		state: text('state', { enum: applianceImageStates }).notNull().default('receiving'),
		/** Bytes stored so far: an interrupted upload continues from here. */
		receivedBytes: bigint('received_bytes', { mode: 'number' }).notNull().default(0),
		/** Where the console fetches the image from (docs/appliances.md, "By URL"); null for an upload. */
		sourceUrl: text('source_url'),
		/** Attempts of the fetch job so far, counted as each starts. */
		fetchAttempts: integer('fetch_attempts').notNull().default(0),
		/** Why the last fetch attempt failed (the image is `failed` once the console gave up). */
		error: text('error'),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt()
	},
	(t) => [uniqueIndex('appliance_images_release').on(t.releaseId)]
);

export type ApplianceUpdateState = (typeof applianceUpdateStates)[number];

/** One appliance's update to an image: its state as the A/B flow moves it, upload progress, what happened. */
export const applianceUpdates = pgTable(
	'appliance_updates',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		taskId: uuid('task_id').notNull(),
		runId: uuid('run_id').notNull(),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		imageId: uuid('image_id')
			.notNull()
			.references(() => applianceImages.id, { onDelete: 'cascade' }),
		rolloutId: uuid('rollout_id'),
		state: text('state', { enum: applianceUpdateStates }).notNull().default('pending'),
		bytes: bigint('bytes', { mode: 'number' }).notNull().default(0),
		total: bigint('total', { mode: 'number' }).notNull().default(0),
		fromSlot: text('from_slot'),
		toSlot: text('to_slot'),
		error: text('error'),
		/** Why the appliance went back to its good slot on its own (boot loop, watchdog), as it reported. */
		fallback: text('fallback'),
		startedAt: createdAt(),
		updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [uniqueIndex('appliance_updates_task').on(t.taskId), index('appliance_updates_node_idx').on(t.nodeId)]
);

/** A release that made appliances of one kind of hardware fall back: not offered to that hardware until cleared. */
export const applianceBadReleases = pgTable(
	'appliance_bad_releases',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		releaseId: uuid('release_id')
			.notNull()
			.references(() => releases.id, { onDelete: 'cascade' }),
		/** The appliances' `hardware` label; `unlabelled` for those without one. */
		hardware: text('hardware').notNull(),
		nodeName: text('node_name').notNull(),
		reason: text('reason').notNull(),
		createdAt: createdAt(),
		clearedAt: timestamp('cleared_at', { withTimezone: true }),
		clearedBy: text('cleared_by')
	},
	(t) => [uniqueIndex('appliance_bad_releases_release_hardware').on(t.releaseId, t.hardware)]
);

/**
 * What the console last learned of an appliance's slots from its slot helper (`flotilla-slot report`, read by
 * the A/B flow and the health sweep): one row per appliance, replaced at each report.
 */
export const applianceSlots = pgTable('appliance_slots', {
	nodeId: uuid('node_id')
		.primaryKey()
		.references(() => nodes.id, { onDelete: 'cascade' }),
	active: text('active').notNull(),
	next: text('next').notNull(),
	good: text('good').notNull(),
	/** Boots of `next` since it was set and not committed (the appliance falls back after 3). */
	tries: integer('tries').notNull(),
	boots: integer('boots').notNull(),
	fallback: text('fallback'),
	skipWindow: boolean('skip_window').notNull(),
	/** `<sha256> <version>` of the image each slot holds, once the appliance verified it; null: not verified. */
	slotA: text('slot_a'),
	slotB: text('slot_b'),
	gateSlot: text('gate_slot'),
	gatePassed: boolean('gate_passed'),
	gateFailedChecks: jsonb('gate_failed_checks').$type<string[]>(),
	/** When the console first saw the current last-gate result (the appliance does not stamp it). */
	gateSeenAt: timestamp('gate_seen_at', { withTimezone: true }),
	reportedAt: timestamp('reported_at', { withTimezone: true }).notNull().defaultNow()
});

export type ApplianceImage = typeof applianceImages.$inferSelect;
export type ApplianceSlots = typeof applianceSlots.$inferSelect;
export type ApplianceUpdate = typeof applianceUpdates.$inferSelect;
export type ApplianceBadRelease = typeof applianceBadReleases.$inferSelect;

export const sysStagedStates = ['running', 'soaking', 'succeeded', 'stopped'] as const;

/** One stage of a staged system update: its label (null: the rest, or the control plane), nodes and run. */
export interface SysStage {
	label: string | null;
	controlPlane: boolean;
	nodeIds: string[];
	runId: string | null;
	/** When its run ended well: the soak before the next stage counts from here. */
	finishedAt: string | null;
	/**
	 * Per node id, the packages and candidate versions the operator approved when starting the staged update:
	 * the stage applies nothing else, however long after the review it runs. Absent for a reboot-only update.
	 */
	approved?: Record<string, { name: string; candidate: string }[]>;
}

/**
 * A staged system update (docs/system-updates.md, "Staged patching"): one run per stage, the next started by the
 * console's periodic check once the earlier stage has soaked its hours without a failure. Kept here, not in
 * memory, so a restarted console carries on where it was.
 */
export const sysStagedUpdates = pgTable(
	'sys_staged_updates',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		state: text('state', { enum: sysStagedStates }).notNull().default('running'),
		stages: jsonb('stages').$type<SysStage[]>().notNull(),
		/** The stage running or soaking (an index into `stages`). */
		current: integer('current').notNull().default(0),
		soakSeconds: integer('soak_seconds').notNull(),
		/** The update's request and options, the same for every stage. */
		request: jsonb('request')
			.$type<{ force_full: boolean; reboot?: 'now' | 'never' | 'window'; rebootOnly: boolean }>()
			.notNull(),
		/** When the stage after `current` may start (set once `current` succeeded). */
		nextStartAt: timestamp('next_start_at', { withTimezone: true }),
		/** Why later stages were not started. */
		reason: text('reason'),
		/** Who started it: every stage's run is theirs. */
		actor: jsonb('actor').$type<{ id: string | null; name: string; via: string; ip: string | null }>().notNull(),
		createdAt: createdAt(),
		updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [index('sys_staged_updates_state_idx').on(t.state)]
);

export type SysStagedUpdate = typeof sysStagedUpdates.$inferSelect;

// Pull agents (docs/pull-agent.md): nodes the console cannot reach over SSH poll it for their updates.

/** A node's enrolled agent: its HMAC secret, sealed under the master key like an SSH key. */
export const agentEnrolments = pgTable('agent_enrolments', {
	nodeId: uuid('node_id')
		.primaryKey()
		.references(() => nodes.id, { onDelete: 'cascade' }),
	sealedSecret: text('sealed_secret').notNull(),
	createdAt: createdAt(),
	lastPollAt: timestamp('last_poll_at', { withTimezone: true }),
	agentVersion: text('agent_version')
});

/**
 * One-time enrolment tokens (docs/pull-agent.md, "Enrolment"): the agent exchanges one, once, before it expires,
 * for its node's secret. Only the token's SHA-256 is kept, as for API tokens; a used token's row stays, so that
 * its reuse is refused by name rather than as unknown.
 */
export const agentEnrolTokens = pgTable(
	'agent_enrol_tokens',
	{
		id: uuid('id').primaryKey().defaultRandom(),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		tokenHash: text('token_hash').notNull().unique(),
		createdBy: text('created_by').notNull(),
		createdAt: createdAt(),
		expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
		usedAt: timestamp('used_at', { withTimezone: true })
	},
	(t) => [index('agent_enrol_tokens_node_idx').on(t.nodeId)]
);

/**
 * Nonces of signed agent requests seen within the timestamp window: a request whose nonce is here is a replay.
 * Rows older than the window are pruned as new ones arrive.
 */
export const agentNonces = pgTable(
	'agent_nonces',
	{
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		nonce: text('nonce').notNull(),
		seenAt: timestamp('seen_at', { withTimezone: true }).notNull().defaultNow()
	},
	(t) => [primaryKey({ columns: [t.nodeId, t.nonce] }), index('agent_nonces_seen_idx').on(t.seenAt)]
);

export type AgentJobState = (typeof agentJobStates)[number];

/** One step's result as the agent reported it (`running`: its output so far, while it runs). */
export interface AgentStepReport {
	status: 'running' | 'succeeded' | 'failed';
	exit_code: number | null;
	output: string;
	at: string;
}

/**
 * An update a pull node's agent runs: one per engine task (same id), which waits on the reports written here.
 */
export const agentJobs = pgTable(
	'agent_jobs',
	{
		id: uuid('id').primaryKey(),
		nodeId: uuid('node_id')
			.notNull()
			.references(() => nodes.id, { onDelete: 'cascade' }),
		state: text('state', { enum: agentJobStates }).notNull().default('pending'),
		release: text('release').notNull(),
		/** Per role, the commit to run. */
		targets: jsonb('targets').$type<Record<string, string>>().notNull(),
		stepDeadlineSeconds: integer('step_deadline_seconds').notNull(),
		steps: jsonb('steps')
			.$type<Record<string, AgentStepReport>>()
			.notNull()
			.default(sql`'{}'::jsonb`),
		/** The highest report sequence number applied: a report resent after an agent's restart is not applied twice. */
		lastSeq: integer('last_seq').notNull().default(0),
		error: text('error'),
		createdAt: createdAt(),
		claimedAt: timestamp('claimed_at', { withTimezone: true }),
		endedAt: timestamp('ended_at', { withTimezone: true })
	},
	(t) => [index('agent_jobs_node_idx').on(t.nodeId, t.state)]
);

export type AgentEnrolment = typeof agentEnrolments.$inferSelect;
export type AgentJob = typeof agentJobs.$inferSelect;
export type AgentEnrolToken = typeof agentEnrolTokens.$inferSelect;
