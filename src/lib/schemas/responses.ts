import { z } from 'zod';
import {
	agentJobStates,
	applianceImageStates,
	applianceUpdateStates,
	rolloutStates,
	runStates as runStateList,
	stepPhases,
	stepStates,
	taskStates,
	keyRotationStates,
	keyRotationPhases,
	keyRotationNodeStates
} from '$lib/states';
import { auditQuerySchema } from './audit';
import {
	deployCommandsSchema,
	healthCheckSchema,
	methodSchema,
	quiesceSchema,
	readinessSchema,
	signaturesSchema,
	snapshotSchema,
	updateScopeSchema
} from './code-sync';
import { roleSchema, scopeSchema } from './common';
import { connectionStatuses, fleetStatuses, inventoryImportQuerySchema } from './nodes';
import { unitTemplateSchema } from './provisioning';
import { notifyChannelKinds, notifyEventKinds } from './notify';
import { channelSchema } from './releases';
import { DAYS, policySchema } from './system-updates';

/**
 * What endpoints answer, for the OpenAPI document (src/lib/server/http/openapi/). The `present*` helpers build
 * these shapes; tests/e2e/openapi.spec.ts checks real answers against the document, so a presenter that drifts
 * from its schema here fails a test.
 */

const time = z.iso.datetime({ offset: true }).describe('ISO 8601 time');
const id = z.uuid();

/** The API's error shape (docs/api.md, "Conventions"). */
export const errorBodySchema = z.object({
	error: z.object({
		code: z.string().describe('machine-readable, e.g. validation_failed, not_found, conflict'),
		message: z.string(),
		fields: z.record(z.string(), z.string()).describe('the field (dotted path) and why it was refused')
	})
});

export const versionSchema = z.object({
	name: z.literal('flotilla'),
	version: z.string(),
	node: z.string().describe('the Node.js version'),
	database: z.string().describe('postgres or pglite')
});

export const meSchema = z.object({
	user: z.object({ id, username: z.string(), role: roleSchema }),
	via: z.enum(['session', 'token']),
	level: scopeSchema,
	token_id: id.nullable()
});

export const userSchema = z.object({
	id,
	username: z.string(),
	role: roleSchema,
	disabled: z.boolean(),
	created_at: time,
	updated_at: time
});

export const tokenSchema = z.object({
	id,
	name: z.string(),
	prefix: z.string(),
	scopes: z.array(scopeSchema),
	expires_at: time.nullable(),
	created_at: time,
	last_used_at: time.nullable(),
	revoked_at: time.nullable()
});

export const createdTokenSchema = tokenSchema.extend({
	token: z.string().describe('the secret, shown once')
});

export const credentialSchema = z.object({
	id,
	name: z.string(),
	key_type: z.string(),
	public_key: z.string(),
	fingerprint: z.string(),
	created_at: time
});

export const nodeSchema = z.object({
	id,
	name: z.string(),
	host: z.string(),
	port: z.int(),
	user: z.string(),
	credential_id: id,
	jump_node_id: id.nullable(),
	kind: z.enum(['server', 'appliance']),
	roles: z.array(z.string()),
	labels: z.record(z.string(), z.string()),
	policy: policySchema.nullable().describe("null: the node takes its roles' default policy"),
	control_plane: z.boolean(),
	connection_status: z.enum(connectionStatuses),
	host_key_fingerprint: z.string().nullable(),
	host_key_status: z.enum(['unknown', 'pinned', 'changed']),
	presented_fingerprint: z.string().nullable(),
	reachable: z.boolean().nullable(),
	last_error: z.string().nullable(),
	last_check_at: time.nullable(),
	last_seen_at: time.nullable(),
	latency_ms: z.number().nullable(),
	uname: z.string().nullable(),
	created_at: time,
	updated_at: time
});

const roleVersionSchema = z.object({
	role: z.string(),
	commit: z.string().nullable(),
	latest: z.string().nullable(),
	behind: z.boolean(),
	synced_at: time.nullable(),
	last_error: z.string().nullable(),
	failed_commit: z.string().nullable(),
	failed_at: time.nullable()
});

export const nodeListSchema = z.object({
	items: z.array(
		nodeSchema.extend({
			status: z.enum(fleetStatuses),
			alerts: z.array(z.string()).describe('what domains raise besides the status'),
			versions: z.array(roleVersionSchema)
		})
	),
	next_cursor: z.string().nullable()
});

const runStates = z.enum(runStateList);

export const runSchema = z.object({
	id,
	number: z.int(),
	kind: z.string(),
	title: z.string().nullable(),
	state: runStates,
	reason: z.string().nullable(),
	created_by: z.string().nullable(),
	scope: z.unknown().describe('what the run was started on'),
	params: z.unknown().describe('the flow’s parameters'),
	options: z.object({
		concurrency: z.int(),
		max_failures: z.int().nullable(),
		max_failure_percent: z.number().nullable(),
		stop_on_first_failure: z.boolean(),
		critical_phases: z.array(z.number().int())
	}),
	parent_run_id: id.nullable(),
	counts: z.record(z.string(), z.int()).describe('tasks by state'),
	created_at: time,
	started_at: time.nullable(),
	ended_at: time.nullable()
});

const taskAnswer = z.object({
	id,
	node_id: id,
	node_name: z.string(),
	phase: z.int(),
	state: z.enum(taskStates),
	needs_attention: z.boolean(),
	current_step: z.string().nullable(),
	attempt: z.int(),
	error: z.string().nullable(),
	started_at: time.nullable(),
	ended_at: time.nullable(),
	steps: z.array(
		z.object({
			name: z.string(),
			phase: z.enum(stepPhases),
			attempt: z.int(),
			state: z.enum(stepStates),
			exit_code: z.int().nullable(),
			error: z.string().nullable(),
			started_at: time,
			ended_at: time.nullable()
		})
	)
});

export const runDetailSchema = runSchema.extend({ tasks: z.array(taskAnswer) });

export const runListSchema = z.object({ items: z.array(runSchema), next_cursor: z.int().nullable() });

/** What endpoints that start work in the background answer (202). */
export const runStartedSchema = z.object({ run_id: id, number: z.int().optional() });

export const pageOf = <S extends z.ZodType>(item: S) =>
	z.object({ items: z.array(item), next_cursor: z.string().nullable() });

/** Lists answered whole, without paging. */
export const listOf = <S extends z.ZodType>(item: S) => z.object({ items: z.array(item) });

export const holdAnswerSchema = z.object({
	id,
	scope: z.enum(['node', 'role']),
	target: z.string().describe('a node id or a role name'),
	pattern: z.string(),
	reason: z.string().nullable(),
	created_by: z.string(),
	created_at: time
});

export const windowAnswerSchema = z.object({
	id,
	scope: z.enum(['node', 'role', 'label']),
	target: z.string().describe('a node id, a role name or a label as key=value'),
	start: z.string().describe('HH:MM in time_zone'),
	end: z.string(),
	time_zone: z.string(),
	days: z.array(z.enum(DAYS)),
	skip_until: time.nullable(),
	next: z.object({ opens: time, closes: time }).nullable().describe('the next opening, none within the horizon')
});

export const channelAnswerSchema = z.object({
	id,
	name: z.string(),
	kind: z.enum(notifyChannelKinds),
	url_origin: z.string().describe('scheme, host and port only: never the path'),
	events: z.array(z.enum(notifyEventKinds)),
	security_days: z.number(),
	reboot_days: z.number(),
	unreachable_minutes: z.number(),
	enabled: z.boolean(),
	created_at: time
});

export const createdChannelSchema = channelAnswerSchema.extend({
	secret: z.string().nullable().describe('a webhook’s signing secret, shown once; null for Slack')
});

export const channelWithDeliveriesSchema = channelAnswerSchema.extend({
	deliveries: z.array(
		z.object({
			id,
			event: z.string(),
			key: z.string(),
			title: z.string().nullable(),
			state: z.enum(['queued', 'delivered', 'failed']),
			attempts: z.int(),
			last_status: z.int().nullable(),
			last_response: z.string().nullable(),
			last_attempt_at: time.nullable(),
			delivered_at: time.nullable(),
			created_at: time
		})
	)
});

export const certRoleAnswerSchema = z.object({
	role: z.string(),
	cert_path: z.string(),
	key_path: z.string(),
	endpoints: z.array(z.object({ port: z.int(), servername: z.string().optional() })),
	reload_command: z.array(z.string()),
	issuer: z.enum(['ca', 'self-signed']),
	validity_days: z.int(),
	extra_sans: z.array(z.string()),
	order: z.int()
});

export const releaseAnswerSchema = z.object({
	id,
	version: z.string(),
	sha: z.string(),
	channel: channelSchema,
	migrations_required: z.boolean(),
	breaking_changes: z.string().nullable(),
	released_at: time,
	signature: z.string(),
	algorithm: z.string().describe('ed25519 or hmac-sha256'),
	verified_by: z.string().describe('the configured key that verified the signature'),
	created_by: z.string(),
	created_at: time
});

export const releaseWithNodesSchema = releaseAnswerSchema.extend({
	nodes: z.array(
		z.object({ node_id: id, node: z.string(), role: z.string(), commit: z.string(), synced_at: time.nullable() })
	)
});

const rolloutStageAnswer = z.object({
	percent: z.number(),
	bake_seconds: z.number(),
	state: z.enum(['pending', 'running', 'done']),
	run_id: id.nullable(),
	started_at: time.nullable(),
	ended_at: time.nullable(),
	acknowledged_failures: z.int()
});

export const rolloutAnswerSchema = z.object({
	id,
	number: z.int(),
	release_id: id,
	release: z.object({ version: z.string(), sha: z.string(), channel: channelSchema }).optional(),
	target: z.object({
		channel: channelSchema.optional(),
		roles: z.array(z.string()).optional(),
		labels: z.array(z.string()).optional(),
		nodes: z.array(z.string()).optional()
	}),
	strategy: z.enum(['immediate', 'staged', 'canary']),
	state: z.enum(rolloutStates),
	reason: z.string().nullable(),
	current_stage: z.int().describe('-1 before the first stage starts'),
	stages: z.array(rolloutStageAnswer),
	failure_threshold_percent: z.int(),
	min_finished_nodes: z.int(),
	concurrency: z.int(),
	require_approval: z.boolean(),
	respect_windows: z.boolean(),
	start_at: time.nullable(),
	rollback_run_id: id.nullable(),
	created_by: z.string(),
	created_at: time,
	ended_at: time.nullable()
});

export const rolloutListSchema = z.object({ items: z.array(rolloutAnswerSchema), next_cursor: z.int().nullable() });

export const rolloutDetailSchema = rolloutAnswerSchema.extend({
	release: releaseAnswerSchema,
	stages: z.array(
		rolloutStageAnswer.extend({
			run_number: z.int().nullable(),
			run_state: runStates.optional().describe('once the stage has a run'),
			counts: z
				.record(z.string(), z.int())
				.nullable()
				.describe(
					'the stage run’s tasks by state; `fell_back`: of its succeeded tasks, the nodes that failed afterwards (counted out of `succeeded`)'
				),
			failure_rate_percent: z.number().nullable()
		})
	),
	nodes: z.array(
		z.object({
			node_id: id,
			node: z.string(),
			stage: z.int(),
			state: z
				.string()
				.describe(
					'pending, waiting_window, its task’s state, fell_back (failed after its task succeeded), or reverted'
				),
			window_opens_at: time.nullable(),
			step: z.string().nullable(),
			step_started_at: time.nullable(),
			why: z
				.string()
				.nullable()
				.describe('why the node has not finished yet: its step, a free slot it waits for, a pause, its window'),
			run_id: id.nullable(),
			task_id: id.nullable(),
			steps: z.array(z.string()).describe('its task’s steps so far, in order (`undo <step>` for an undo)'),
			pull: z.boolean().describe('its task runs through the node’s pull agent (docs/pull-agent.md), not SSH'),
			previous: z.record(z.string(), z.string().nullable()).nullable().describe('per role, the commit it ran before'),
			error: z.string().nullable()
		})
	)
});

export const imageAnswerSchema = z.object({
	id,
	release_id: id,
	version: z.string().optional().describe('in lists: the release’s version'),
	channel: channelSchema.optional(),
	sha256: z.string(),
	size: z.int(),
	signature: z.string(),
	verified_by: z.string(),
	state: z.enum(applianceImageStates),
	received_bytes: z.int().describe('where an interrupted upload continues'),
	source_url: z.string().nullable().describe('where the console fetches the image from; null for an upload'),
	error: z.string().nullable().describe('why fetching it from its URL failed (last attempt, or for good when failed)'),
	created_by: z.string(),
	created_at: time
});

export const applianceUpdateAnswerSchema = z.object({
	id,
	task_id: id,
	run_id: id,
	node_id: id,
	node: z.string().optional().describe('the node’s name, where the answer names it'),
	image_id: id,
	rollout_id: id.nullable(),
	state: z.enum(applianceUpdateStates),
	bytes: z.int(),
	total: z.int(),
	from_slot: z.string().nullable(),
	to_slot: z.string().nullable(),
	error: z.string().nullable(),
	fallback: z.string().nullable().describe('why the appliance went back to its good slot on its own'),
	started_at: time,
	updated_at: time
});

export const badReleaseAnswerSchema = z.object({
	id,
	release_id: id,
	version: z.string().optional().describe('in lists: the release’s version'),
	hardware: z.string(),
	node: z.string(),
	reason: z.string(),
	created_at: time,
	cleared_at: time.nullable(),
	cleared_by: z.string().nullable()
});

const slotImageSchema = z
	.object({ sha256: z.string(), version: z.string() })
	.nullable()
	.describe('the image the appliance verified in this slot; null: none verified (installed with it, or cleared)');

export const applianceOverviewSchema = z.object({
	node: z.object({
		id,
		name: z.string(),
		kind: z.enum(['server', 'appliance']).describe('a server has no slots: `slots` null, the lists empty'),
		labels: z.record(z.string(), z.string())
	}),
	slots: z
		.object({
			active: z.enum(['a', 'b']),
			next: z.enum(['a', 'b']).describe('the slot the next boot starts'),
			good: z.enum(['a', 'b']).describe('the last committed slot'),
			tries: z.int().describe('boots of the next slot without a commit; the appliance falls back after 3'),
			boots: z.int(),
			fallback: z.string().nullable().describe('why the appliance last went back to its good slot on its own'),
			skip_window: z.boolean(),
			slots: z.array(
				z.object({
					slot: z.enum(['a', 'b']),
					active: z.boolean(),
					next_boot: z.boolean(),
					good: z.boolean(),
					image: slotImageSchema
				})
			),
			last_gate: z
				.object({
					slot: z.enum(['a', 'b']),
					passed: z.boolean(),
					failed_checks: z.array(z.string()),
					seen_at: time.describe('when the console first saw this outcome')
				})
				.nullable(),
			reported_at: time
		})
		.nullable()
		.describe('the last slot report the console read; null before the first'),
	updates: z.array(applianceUpdateAnswerSchema.extend({ version: z.string(), run_number: z.int().nullable() })),
	fallbacks: z.array(
		z.object({ run_id: id, run_number: z.int().nullable(), version: z.string(), reason: z.string(), at: time })
	),
	bad_releases: z.array(
		z.object({
			id,
			version: z.string(),
			hardware: z.string(),
			reason: z.string(),
			created_at: time,
			cleared_at: time.nullable()
		})
	)
});

export const authorityAnswerSchema = z.object({
	id,
	name: z.string(),
	fingerprint: z.string(),
	issuing: z.boolean().describe('the one CA that issues'),
	has_key: z.boolean().describe('false for a CA only trusted'),
	not_after: time,
	cert_pem: z.string(),
	created_at: time
});

export const issuedAnswerSchema = z.object({
	id,
	serial: z.string(),
	node: z.string(),
	node_id: id.nullable().describe('null once the node is removed'),
	role: z.string().nullable(),
	subject: z.string(),
	sans: z.array(z.string()),
	fingerprint_sha256: z.string(),
	not_before: time,
	not_after: time,
	run_id: id.nullable(),
	revoked_at: time.nullable(),
	revoke_reason: z.string().nullable(),
	issued_at: time
});

export const nodeUpdatesAnswerSchema = z.object({
	node_id: id,
	name: z.string(),
	policy: policySchema.describe("the policy that applies: the node's own, or its roles' default"),
	policy_role: z.string().nullable().describe('the role whose default policy applies; null when the node has its own'),
	roles: z.array(z.string()),
	labels: z.record(z.string(), z.string()),
	control_plane: z.boolean(),
	pending_count: z.int(),
	security_count: z.int(),
	pending: z.array(
		z.object({
			name: z.string(),
			arch: z.string(),
			installed: z.string(),
			candidate: z.string(),
			suites: z.array(z.string()),
			security: z.boolean(),
			security_reason: z.string().nullable()
		})
	),
	reboot_required: z.boolean(),
	reboot_packages: z.array(z.string()),
	services_to_restart: z
		.array(z.string())
		.nullable()
		.describe('null when needrestart is not installed on the node (or it was never scanned)'),
	held: z.array(z.string()),
	last_scan: time.nullable(),
	last_error: z.string().nullable(),
	last_error_at: time.nullable()
});

export const certificateAnswerSchema = z.object({
	id,
	node_id: id,
	node: z.string(),
	source: z.enum(['endpoint', 'file', 'report']),
	location: z.string().describe('the endpoint or the path'),
	role: z.string().nullable(),
	servername: z.string().nullable(),
	subject: z.string().nullable(),
	sans: z.array(z.string()),
	issuer: z.string().nullable(),
	serial: z.string().nullable(),
	not_before: time.nullable(),
	not_after: time.nullable(),
	days_left: z.int().nullable(),
	level: z.enum(['ok', 'warning', 'critical', 'expired']).nullable(),
	fingerprint_sha256: z.string().nullable(),
	key_type: z.string().nullable(),
	key_bits: z.int().nullable(),
	self_signed: z.boolean().nullable(),
	chain_verified: z.boolean().nullable(),
	chain_error: z.string().nullable(),
	mismatch: z.boolean(),
	error: z.string().nullable().describe('why the certificate could not be read'),
	checked_at: time
});

/** `GET /api/openapi.json`: the document's outline (its paths are described by the document itself). */
export const openApiDocumentSchema = z.object({
	openapi: z.literal('3.1.0'),
	info: z.object({ title: z.string(), version: z.string(), description: z.string() }),
	tags: z.array(z.object({ name: z.string() })),
	paths: z.record(z.string(), z.record(z.string(), z.object({ operationId: z.string() }).loose())),
	components: z.object({
		schemas: z.record(z.string(), z.unknown()),
		securitySchemes: z.record(z.string(), z.unknown())
	})
});

export const auditRowSchema = z.object({
	id: z.int(),
	at: time,
	actor: z.string(),
	actor_id: id.nullable(),
	via: z.string().describe('session, token:<token id> or system'),
	action: z.string(),
	target_type: z.string().nullable(),
	target_id: z.string().nullable(),
	source_ip: z.string().nullable(),
	result: auditQuerySchema.shape.result.unwrap(),
	details: z.record(z.string(), z.unknown())
});

/** `POST /api/nodes/{id}/check`: what connecting to the node found. */
export const checkResultSchema = z.object({
	reachable: z.boolean(),
	host_key_fingerprint: z.string().nullable(),
	host_key_status: nodeSchema.shape.host_key_status,
	latency_ms: z.number().nullable(),
	uname: z.string().nullable(),
	error: z.string().nullable()
});

const inventoryIssue = z.object({ line: z.int(), host: z.string().optional(), message: z.string() });

/** `POST /api/inventory/import`: the plan, or what was imported. */
export const inventoryImportAnswerSchema = z.object({
	dry_run: z.boolean(),
	format: inventoryImportQuerySchema.shape.format.unwrap(),
	nodes: z.array(
		z.object({
			line: z.int(),
			name: z.string(),
			host: z.string(),
			port: z.int(),
			user: z.string(),
			kind: nodeSchema.shape.kind,
			roles: z.array(z.string()),
			labels: z.record(z.string(), z.string()),
			policy: policySchema.nullable(),
			control_plane: z.boolean(),
			host_key_fingerprint: z.string().nullable(),
			action: z.enum(['create', 'skip']).describe('skip: a node of that name exists and is left as it is'),
			reason: z.string().optional(),
			id: id.optional().describe('the new node’s id, after a real import')
		})
	),
	created: z.int(),
	skipped: z.int(),
	errors: z.array(inventoryIssue),
	warnings: z.array(inventoryIssue)
});

/** A code-sync role (docs/code-sync.md). */
export const codeRoleAnswerSchema = z.object({
	name: z.string(),
	description: z.string(),
	method: methodSchema,
	path: z.string(),
	source_repo: z.string().nullable(),
	commands: deployCommandsSchema.nullable().describe('a commands role’s programs; null for git and push'),
	branch: z.string(),
	follow_tags: z.string().nullable(),
	units: z.array(z.string()),
	install_command: z.array(z.string()),
	restart_command: z.array(z.string()),
	health: healthCheckSchema,
	health_timeout_seconds: z.int(),
	order: z.int(),
	latest_commit: z.string().nullable(),
	latest_message: z.string().nullable(),
	latest_author: z.string().nullable(),
	latest_at: time.nullable(),
	auto_update: z.boolean(),
	auto_update_interval_minutes: z.int(),
	auto_update_max_failures_per_day: z.int(),
	auto_update_disabled_reason: z.string().nullable(),
	auto_update_last_at: time.nullable(),
	signatures: signaturesSchema.nullable(),
	readiness_check: readinessSchema.nullable(),
	snapshot: snapshotSchema.nullable(),
	quiesce: quiesceSchema.nullable(),
	update_policy: policySchema.nullable().describe('the system-update policy of its nodes that have none of their own'),
	created_at: time,
	updated_at: time
});

export const pinAnswerSchema = z.object({
	role: z.string(),
	commit: z.string(),
	previous: z.string().nullable().describe('the role’s target before the pin'),
	nodes_outdated: z.int()
});

/** A role's provisioning definition, secrets by name only. */
export const provisioningAnswerSchema = z.object({
	role: z.string(),
	repo_url: z.string().nullable(),
	packages: z.array(z.string()),
	service_user: z.string().nullable(),
	effective_service_user: z.string(),
	env_file: z.string(),
	env_template: z.string(),
	secret_names: z.array(z.string()),
	unit_templates: z.array(unitTemplateSchema),
	updated_at: time.nullable()
});

export const nodeVersionsAnswerSchema = z.object({ node_id: id, versions: z.array(roleVersionSchema) });

export const notifyAnswerSchema = z.object({
	commit: z.string(),
	roles: z.array(
		z.object({
			role: z.string(),
			new_commit: z.boolean().describe('it became the role’s latest'),
			nodes_outdated: z.int(),
			reason: z.string().optional().describe('why a commit new to a role following tags did not')
		})
	)
});

const excludedNodes = z.array(z.object({ id, name: z.string(), reason: z.string() }));

/** A code update's plan (docs/code-sync.md, "Update All"). */
export const codePlanSchema = z.object({
	targets: z.record(z.string(), z.string()).describe('per role, the commit this update deploys'),
	signatures_required: z.array(z.string()),
	unknown_targets: z
		.array(z.object({ role: z.string(), commit: z.string(), reason: z.string() }))
		.describe(
			'targets the console can tell are not there to deploy (a push role’s commit missing from its checkout, a git role’s commit a node’s last fetch did not bring)'
		),
	nodes: z.array(
		z.object({
			id,
			name: z.string(),
			address: z.string(),
			control_plane: z.boolean(),
			phase: z.int(),
			roles: z.array(z.object({ role: z.string(), from: z.string().nullable(), to: z.string() })),
			warning: z.string().nullable()
		})
	),
	phases: z.array(z.object({ phase: z.int(), label: z.string(), nodes: z.int(), critical: z.boolean() })),
	excluded: excludedNodes,
	concurrency: z.int(),
	scope: updateScopeSchema
});

export const updatesStatusSchema = z.object({
	updating: z.boolean(),
	runs: z.object({ active: z.array(runSchema), recent: z.array(runSchema) }),
	rollouts: z.object({ active: z.array(rolloutAnswerSchema), recent: z.array(rolloutAnswerSchema) })
});

/** Which nodes fall in which stage of a rollout. */
export const rolloutPreviewSchema = z.object({
	id: z.string().describe('the id the stages were computed with: create with it to get these stages'),
	stages: z.array(
		z.object({ percent: z.number(), bake_seconds: z.number(), nodes: z.array(z.object({ id, name: z.string() })) })
	),
	excluded: excludedNodes,
	roles: z.array(z.string())
});

export const createdRolloutSchema = rolloutAnswerSchema.extend({ preview: rolloutPreviewSchema });

export const fleetUpdateAnswerSchema = z.object({
	release: releaseAnswerSchema,
	image: imageAnswerSchema,
	rollout: createdRolloutSchema,
	maintenance_windows: z.array(windowAnswerSchema)
});

/** A certificate rotation's plan (docs/certificates.md). */
export const certRotationPlanSchema = z.object({
	nodes: z.array(
		z.object({
			id,
			name: z.string(),
			phase: z.int(),
			roles: z.array(z.string()),
			days_left: z.int().nullable().describe('the soonest expiry in its inventory; null: never scanned'),
			warning: z
				.string()
				.nullable()
				.describe('"not proven by handshake: role X has no endpoints": verified on the node\'s disk only')
		})
	),
	phases: z.array(z.object({ phase: z.int(), label: z.string(), nodes: z.int() })),
	excluded: excludedNodes,
	warnings: z.array(z.string()).describe('once per role without endpoints in the plan')
});

const credentialRef = z.object({
	id: id.nullable().describe('null once an admin deleted the credential'),
	name: z.string().nullable()
});

/** A key rotation (docs/ssh-key-rotation.md, "API"). */
export const keyRotationAnswerSchema = z.object({
	id,
	number: z.int(),
	state: z.enum(keyRotationStates),
	phase: z.enum(keyRotationPhases).describe('the current phase; `cleanup` while an aborted rotation cleans up'),
	credential: z.object({ from: credentialRef, to: credentialRef }),
	safety_net: credentialRef,
	remove_safety_net: z.boolean(),
	aborted_phase: z.string().nullable(),
	abort_reason: z.string().nullable(),
	phases: z.array(
		z.object({
			phase: z.enum(keyRotationPhases),
			run_id: id,
			state: z.enum(['running', 'passed', 'failed']),
			nodes: z.int(),
			problems: z.array(z.object({ node: z.string(), reason: z.string(), unreachable: z.boolean() })),
			started_at: time,
			ended_at: time.nullable()
		})
	),
	nodes: z.array(
		z.object({
			node_id: id,
			node: z.string(),
			state: z.enum(keyRotationNodeStates),
			reached: z.enum(keyRotationPhases).nullable().describe('the last phase done on the node'),
			error: z.string().nullable()
		})
	),
	deferred_nodes: z.array(z.string()).describe('away: finished when they are back'),
	cleanup_pending_nodes: z.array(z.string()).describe('after an abort: this rotation’s lines still to be removed'),
	catch_up_run_id: id.nullable().describe('the catch-up or cleanup run under way'),
	created_by: z.string(),
	created_at: time,
	ended_at: time.nullable()
});

/** An SSH key rotation's dry run: what each host would go through (docs/ssh-key-rotation.md). */
export const keyRotationDryRunSchema = z.object({
	hosts: z.array(
		z.object({
			node: z.string(),
			node_id: id,
			host: z.string(),
			reachable: z.boolean(),
			error: z.string().nullable().describe('why the console could not look'),
			survey: z
				.object({
					consoleKeys: z.array(z.object({ fingerprint: z.string(), credential: z.string(), comment: z.string() })),
					otherKeys: z.array(z.object({ fingerprint: z.string(), type: z.string(), comment: z.string() })),
					passwordLogin: z.enum(['yes', 'no', 'unknown']),
					passwordSource: z.enum(['sshd -T', 'sshd_config']).nullable(),
					mode: z.string(),
					owner: z.string()
				})
				.nullable()
		})
	)
});

/** A node's pull agent enrolment (docs/pull-agent.md); the secret only in the answer that made it. */
export const agentEnrolmentSchema = z.object({
	node_id: id,
	enrolled_at: time,
	last_poll_at: time.nullable(),
	agent_version: z.string().nullable()
});
export const agentEnrolledSchema = agentEnrolmentSchema.extend({
	secret: z.string().describe('The agent’s secret, shown this once')
});

/** A one-time enrolment token for a node's agent (docs/pull-agent.md, "Enrolment"), shown this once. */
export const agentEnrolTokenSchema = z.object({
	node_id: id,
	token: z.string().describe('The one-time token, shown this once: the agent exchanges it for its secret'),
	expires_at: time
});

/** An agent's poll answer: its job, if any, and when to ask again. */
export const agentNextAnswerSchema = z.object({
	job: z
		.object({
			id,
			release: z.string(),
			targets: z.string().describe('`role=commit` pairs, space-separated'),
			commit: z.string().describe('The first role’s commit'),
			step_deadline_seconds: z.number().int()
		})
		.nullable(),
	poll_seconds: z.number().int()
});

/** An appliance's signed check-in: whether an update waits for it, in the shape appliances ask for. */
export const applianceCheckinAnswerSchema = z.object({
	update_available: z.boolean(),
	update: z
		.object({
			version: z.string(),
			iso_url: z
				.string()
				.nullable()
				.describe('Where the console fetched the release’s image from; null when uploaded, or without an image'),
			sha256: z.string().nullable().describe('The release’s image’s sha256; null without an image'),
			reboot_after: z.string().nullable().describe('The start (`HH:MM`) of the appliance’s maintenance window')
		})
		.nullable(),
	poll_seconds: z.number().int()
});

/** An agent's report answer: whether it was applied (a resent report is not), and the job's state. */
export const agentReportAnswerSchema = z.object({ applied: z.boolean(), state: z.enum(agentJobStates) });
