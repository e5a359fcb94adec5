import { error, redirect } from '@sveltejs/kit';
import { iso } from '$lib/format';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { versionsFor } from '$lib/server/codesync/status';
import { failedRunsOf } from '$lib/server/codesync/views';
import { lastEventId, recentTasksOf, taskOutput } from '$lib/server/engine';
import { statusOf } from '$lib/server/fleet/status';
import { ServiceError } from '$lib/server/errors';
import { checkNodeFor } from '$lib/server/fleet/checks';
import { connectionStatus, getNode, listNodes, updateNode } from '$lib/server/fleet/nodes';
import { nodeEditShape, nodeFormValues } from '$lib/server/fleet/node-form';
import { listCredentials } from '$lib/server/keys/credentials';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm } from '$lib/server/http/forms';
import { acceptHostKeySchema, updateNodeSchema } from '$lib/schemas/nodes';
import { acceptHostKey } from '$lib/server/fleet/host-keys';
import { planAction, updateAction } from '$lib/server/codesync/update-forms';
import { releasesForCommits } from '$lib/server/releases/releases';
import { activeRolloutsOfNode } from '$lib/server/rollouts/rollouts';
import { listRoles } from '$lib/server/codesync/roles';
import { provisionSchema } from '$lib/schemas/provisioning';
import { startProvisioning } from '$lib/server/provisioning/provision';
import { provisioningOfNode } from '$lib/server/provisioning/definitions';
import { createEnrolTokenSchema, ENROL_TOKEN_MINUTES, installAgentSchema } from '$lib/schemas/agents';
import { agentStartCommand, createEnrolToken, pendingEnrolToken } from '$lib/server/agents/enrol-tokens';
import { enrolmentOf, revokeAgent } from '$lib/server/agents/enrolment';
import { startAgentInstall } from '$lib/server/agents/install';
import type { Actions, PageServerLoad, RequestEvent } from './$types';

function nodeId(id: string): string {
	// Not a UUID cannot be a node; asking PostgreSQL would only fail on the cast.
	if (!uuidSchema.safeParse(id).success) error(404, 'Node not found');
	return id;
}

async function loadNode(id: string) {
	try {
		return await getNode(id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, 'Node not found');
		throw err;
	}
}

export const load: PageServerLoad = async (event) => {
	event.depends('app:node');
	const id = nodeId(event.params.id);
	// Taken before the snapshot: output printed in between comes again by the stream, never goes missing.
	const after = await lastEventId();
	const node = await loadNode(id);
	const [status, versions, failedRuns, recent, rollouts, roles, provisioned] = await Promise.all([
		statusOf(id),
		versionsFor([node]),
		failedRunsOf(id),
		recentTasksOf(id, 20),
		activeRolloutsOfNode(id),
		listRoles(),
		provisioningOfNode(id)
	]);
	// Which release each role's commit is, when one names it (docs/releases.md).
	const releaseOf = await releasesForCommits((versions.get(id) ?? []).flatMap((v) => (v.commit ? [v.commit] : [])));
	// The log to show: the task running on the node now, else its most recent one.
	const running = recent.find((t) => t.state === 'running') ?? null;
	const focus = running ?? recent[0] ?? null;
	const output = focus ? await taskOutput(focus.runId, focus.id, after) : null;
	const principal = principalOf(event);
	const canEdit = authorize(event.route.id, 'POST', '?/edit', principal).allow;
	const canEnrol = authorize(event.route.id, 'POST', '?/enrolAgent', principal).allow;
	return {
		node: {
			id: node.id,
			name: node.name,
			address: `${node.username}@${node.host}:${node.port}`,
			kind: node.kind,
			roles: node.roles,
			labels: node.labels,
			policy: node.policy,
			controlPlane: node.controlPlane,
			connection: connectionStatus(node),
			hostKeyFingerprint: node.hostKeyFingerprint,
			hostKeyStatus: node.hostKeyStatus,
			presentedFingerprint: node.presentedFingerprint,
			lastSeenAt: iso(node.lastSeenAt),
			lastCheckAt: iso(node.lastCheckAt),
			latencyMs: node.latencyMs,
			uname: node.uname,
			lastError: node.lastError
		},
		status: status ?? 'UP_TO_DATE',
		versions: (versions.get(id) ?? []).map((v) => ({
			...v,
			syncedAt: iso(v.syncedAt),
			failedAt: iso(v.failedAt),
			failedRun: failedRuns.get(v.role) ?? null,
			release: v.commit ? (releaseOf.get(v.commit)?.version ?? null) : null,
			releaseId: v.commit ? (releaseOf.get(v.commit)?.id ?? null) : null
		})),
		rollouts,
		roleNames: roles.map((r) => r.name),
		provisioned,
		tasks: recent.map((t) => ({
			id: t.id,
			runId: t.runId,
			runNumber: t.runNumber,
			runTitle: t.runTitle,
			runKind: t.runKind,
			runState: t.runState,
			state: t.state,
			needsAttention: t.needsAttention,
			currentStep: t.currentStep,
			attempt: t.attempt,
			error: t.error,
			startedAt: iso(t.startedAt),
			endedAt: iso(t.endedAt)
		})),
		focus: focus
			? {
					running: focus === running,
					run: {
						id: focus.runId,
						number: focus.runNumber,
						title: focus.runTitle,
						kind: focus.runKind,
						state: focus.runState,
						reason: null,
						created_by: '',
						created_at: '',
						started_at: null,
						ended_at: null
					},
					task: {
						id: focus.id,
						node_name: node.name,
						state: focus.state,
						needs_attention: focus.needsAttention,
						current_step: focus.currentStep,
						attempt: focus.attempt,
						error: focus.error,
						started_at: iso(focus.startedAt),
						ended_at: iso(focus.endedAt)
					},
					lines: output!.lines,
					truncated: output!.truncated
				}
			: null,
		after,
		// The edit form (admins only) shows the node as the add-node form would, with what it may pick from.
		edit: canEdit ? await editChoices(node) : null,
		// The pull agent (docs/pull-agent.md): admins enrol and revoke it here.
		agent: canEnrol ? await agentOf(node) : null,
		canAcceptHostKey: authorize(event.route.id, 'POST', '?/acceptHostKey', principal).allow,
		canOperate: authorize(event.route.id, 'POST', '?/update', principal).allow
	};
};

async function editChoices(node: Awaited<ReturnType<typeof getNode>>) {
	const [creds, others] = await Promise.all([listCredentials(), listNodes({ limit: 500 })]);
	return {
		values: nodeFormValues(node),
		credentials: creds.map((c) => ({ id: c.id, name: c.name })),
		bastions: others.items.filter((n) => n.id !== node.id).map((n) => ({ id: n.id, name: n.name }))
	};
}

async function agentOf(node: Awaited<ReturnType<typeof getNode>>) {
	const [enrolment, waiting] = await Promise.all([enrolmentOf(node.id), pendingEnrolToken(node.id)]);
	return {
		enrolledAt: enrolment?.enrolled_at ?? null,
		lastPollAt: enrolment?.last_poll_at ?? null,
		version: enrolment?.agent_version ?? null,
		tokenExpiresAt: iso(waiting?.expiresAt ?? null),
		minutes: ENROL_TOKEN_MINUTES,
		// Over SSH: only with the node's host key pinned.
		canInstall: node.hostKeyStatus === 'pinned'
	};
}

/** Scoped to this node, whatever the form says. */
const scopeOf = (event: RequestEvent) => ({ nodes: [nodeId(event.params.id)] });

export const actions: Actions = {
	check: async (event) => {
		const id = nodeId(event.params.id);
		try {
			const { node, result } = await checkNodeFor(actorOf(event), id);
			return { check: { name: node.name, ...result } };
		} catch (err) {
			return formError(err);
		}
	},
	/** Pins the key the node presented, as Settings → Nodes does; the page shows it for review first. */
	acceptHostKey: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, acceptHostKeySchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const node = await acceptHostKey(actorOf(event), id, parsed.data.fingerprint);
			return { notice: `Pinned ${parsed.data.fingerprint} for ${node.name}.` };
		} catch (err) {
			return formError(err);
		}
	},
	/** Every field the API's PATCH takes, checked by the same schema; updateNode records it in the audit log. */
	edit: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, updateNodeSchema, nodeEditShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const node = await updateNode(actorOf(event), id, parsed.data);
			return { notice: `Saved ${node.name}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},
	plan: async (event) => {
		await loadNode(nodeId(event.params.id));
		return planAction(event, scopeOf(event));
	},
	update: async (event) => {
		await loadNode(nodeId(event.params.id));
		return updateAction(event, scopeOf(event));
	},
	/** Provisions this node for a role (docs/provisioning.md); the page follows the run's task as it goes. */
	provision: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, provisionSchema, (form) => ({
			role: form.get('role') ?? undefined,
			phases: form.getAll('phases')
		}));
		if (!parsed.ok) return parsed.failure;
		try {
			await startProvisioning(actorOf(event), id, parsed.data);
			return { notice: `Provisioning for ${parsed.data.role} started.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},
	/** A one-time enrolment token, shown this once with the command that starts the agent with it. */
	enrolAgent: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, createEnrolTokenSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const made = await createEnrolToken(actorOf(event), id, parsed.data);
			return {
				enrolToken: {
					token: made.token,
					expiresAt: made.expires_at,
					command: agentStartCommand(event.url.origin, id, made.token)
				}
			};
		} catch (err) {
			return formError(err, parsed.form);
		}
	},
	/** Installs the agent over SSH (docs/pull-agent.md, "Installing over SSH"), pointed at this console. */
	installAgent: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, installAgentSchema);
		if (!parsed.ok) return parsed.failure;
		let runId: string;
		try {
			({ runId } = await startAgentInstall(actorOf(event), id, parsed.data, event.url.origin));
		} catch (err) {
			return formError(err, parsed.form);
		}
		// The run's page shows the install as it goes.
		redirect(303, `/runs/${runId}`);
	},
	revokeAgent: async (event) => {
		const id = nodeId(event.params.id);
		try {
			await revokeAgent(actorOf(event), id);
			return { notice: 'The agent was revoked: its requests are refused, and the node is updated over SSH again.' };
		} catch (err) {
			return formError(err);
		}
	}
};
