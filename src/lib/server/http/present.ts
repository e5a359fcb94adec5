import { iso } from '$lib/format';
import type { PublicApiToken } from '$lib/server/auth/api-tokens';
import type { PublicUser } from '$lib/server/auth/users';
import type { AuditRow, Node, TaskStep } from '$lib/server/db/schema';
import type { RunSummary, TaskWithSteps } from '$lib/server/engine';
import { connectionStatus } from '$lib/server/fleet/nodes';
import type { PublicCredential } from '$lib/server/keys/credentials';

// The API speaks snake_case (docs/api.md); these turn rows into its shapes.

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

export const presentCredential = (c: PublicCredential) => ({
	id: c.id,
	name: c.name,
	key_type: c.keyType,
	public_key: c.publicKey,
	fingerprint: c.fingerprint,
	created_at: c.createdAt
});

export const presentNode = (n: Node) => ({
	id: n.id,
	name: n.name,
	host: n.host,
	port: n.port,
	user: n.username,
	credential_id: n.credentialId,
	jump_node_id: n.jumpNodeId,
	kind: n.kind,
	roles: n.roles,
	labels: n.labels,
	policy: n.policy,
	control_plane: n.controlPlane,
	connection_status: connectionStatus(n),
	host_key_fingerprint: n.hostKeyFingerprint,
	host_key_status: n.hostKeyStatus,
	presented_fingerprint: n.presentedFingerprint,
	reachable: n.reachable,
	last_error: n.lastError,
	last_check_at: n.lastCheckAt,
	last_seen_at: n.lastSeenAt,
	latency_ms: n.latencyMs,
	uname: n.uname,
	created_at: n.createdAt,
	updated_at: n.updatedAt
});

export const presentRun = (r: RunSummary) => ({
	id: r.id,
	number: r.number,
	kind: r.kind,
	title: r.title,
	state: r.state,
	reason: r.reason,
	created_by: r.createdBy,
	scope: r.scope,
	params: r.params,
	options: {
		concurrency: r.options.concurrency,
		max_failures: r.options.maxFailures ?? null,
		max_failure_percent: r.options.maxFailurePercent ?? null,
		stop_on_first_failure: r.options.stopOnFirstFailure ?? false,
		critical_phases: r.options.criticalPhases ?? []
	},
	parent_run_id: r.parentRunId,
	counts: r.counts,
	created_at: r.createdAt.toISOString(),
	started_at: iso(r.startedAt),
	ended_at: iso(r.endedAt)
});

export const presentStep = (s: TaskStep) => ({
	name: s.name,
	phase: s.phase,
	attempt: s.attempt,
	state: s.state,
	exit_code: s.exitCode,
	error: s.error,
	started_at: s.startedAt.toISOString(),
	ended_at: iso(s.endedAt)
});

export const presentTask = (t: TaskWithSteps) => ({
	id: t.id,
	node_id: t.nodeId,
	node_name: t.nodeName,
	phase: t.phase,
	state: t.state,
	needs_attention: t.needsAttention,
	current_step: t.currentStep,
	attempt: t.attempt,
	error: t.error,
	started_at: iso(t.startedAt),
	ended_at: iso(t.endedAt),
	steps: t.steps.map(presentStep)
});
