import { z } from 'zod';
import {
	applianceUpdatesQuerySchema,
	declareImageSchema,
	fleetUpdateSchema,
	pushSchema
} from '$lib/schemas/appliances';
import {
	agentEnrolHeadersSchema,
	agentNextSchema,
	agentReportSchema,
	createEnrolTokenSchema
} from '$lib/schemas/agents';
import { auditQuerySchema } from '$lib/schemas/audit';
import { createTokenSchema, createUserSchema, resetPasswordSchema, updateUserSchema } from '$lib/schemas/auth';
import {
	certRoleSchema,
	createCaSchema,
	importCaSchema,
	issuedQuerySchema,
	reportSchema,
	revokeSchema,
	rotateSchema,
	scanSchema,
	trustCaSchema
} from '$lib/schemas/certificates';
import {
	createRoleSchema,
	markSyncedSchema,
	notifySchema,
	pinSchema,
	triggerSchema,
	updateRoleSchema
} from '$lib/schemas/code-sync';
import {
	acceptHostKeySchema,
	createCredentialSchema,
	createNodeSchema,
	inventoryImportQuerySchema,
	nodeQuerySchema,
	updateNodeSchema,
	bulkNodesSchema,
	bulkNodeActions
} from '$lib/schemas/nodes';
import { createChannelSchema, deliveriesQuerySchema, notifySettingsSchema } from '$lib/schemas/notify';
import { provisioningDefinitionSchema, provisionSchema } from '$lib/schemas/provisioning';
import {
	createRolloutSchema,
	manifestSchema,
	releaseListQuerySchema,
	rolloutListQuerySchema
} from '$lib/schemas/releases';
import {
	applianceOverviewSchema,
	applianceUpdateAnswerSchema,
	auditRowSchema,
	authorityAnswerSchema,
	certRotationPlanSchema,
	checkResultSchema,
	codePlanSchema,
	codeRoleAnswerSchema,
	createdRolloutSchema,
	fleetUpdateAnswerSchema,
	inventoryImportAnswerSchema,
	keyRotationAnswerSchema,
	keyRotationDryRunSchema,
	nodeVersionsAnswerSchema,
	notifyAnswerSchema,
	openApiDocumentSchema,
	pinAnswerSchema,
	provisioningAnswerSchema,
	rolloutPreviewSchema,
	runDetailSchema,
	updatesStatusSchema,
	badReleaseAnswerSchema,
	certRoleAnswerSchema,
	certificateAnswerSchema,
	channelAnswerSchema,
	channelWithDeliveriesSchema,
	createdChannelSchema,
	createdTokenSchema,
	holdAnswerSchema,
	imageAnswerSchema,
	issuedAnswerSchema,
	listOf,
	nodeUpdatesAnswerSchema,
	releaseAnswerSchema,
	releaseWithNodesSchema,
	rolloutAnswerSchema,
	rolloutDetailSchema,
	rolloutListSchema,
	windowAnswerSchema,
	credentialSchema,
	meSchema,
	nodeListSchema,
	nodeSchema,
	pageOf,
	runListSchema,
	runSchema,
	runStartedSchema,
	tokenSchema,
	userSchema,
	versionSchema,
	agentEnrolledSchema,
	agentEnrolmentSchema,
	agentEnrolTokenSchema,
	agentNextAnswerSchema,
	agentReportAnswerSchema,
	applianceCheckinAnswerSchema
} from '$lib/schemas/responses';
import {
	createRunSchema,
	eventStreamHeadersSchema,
	eventStreamQuerySchema,
	runQuerySchema,
	updatesStatusQuerySchema
} from '$lib/schemas/runs';
import { rotateKeysSchema } from '$lib/schemas/ssh-keys';
import { holdSchema, nodeUpdateSchema, scanRequestSchema, skipSchema, windowSchema } from '$lib/schemas/system-updates';
import type { Method } from '$lib/server/auth/access';

/**
 * One answer of an operation: JSON with the schema of what the endpoint's presenter writes, a non-JSON body
 * (streams, downloads) by its content type, or no body (204). The document refuses a JSON answer without a
 * schema, so no answer is documented as a bare object.
 */
export interface Answer {
	description: string;
	schema?: z.ZodType;
	/** Non-JSON answers: streams, downloads. */
	contentType?: string;
}

/**
 * One operation of the JSON API, as the OpenAPI document describes it. The request schemas are the very zod
 * schemas the endpoint validates with; who may call it comes from the access table, never from here.
 */
export interface Operation {
	method: Method;
	/** The route as the access table (and `src/routes`) names it, e.g. `/api/nodes/[id]`. */
	route: string;
	tag: string;
	summary: string;
	query?: z.ZodObject;
	/** Request headers the endpoint reads and validates (e.g. `Last-Event-ID`). */
	headers?: z.ZodObject;
	body?: z.ZodType;
	/** A body the endpoint accepts, shown on the reference page and sent by tests/e2e/openapi.spec.ts. */
	example?: unknown;
	/** A non-JSON request body (an upload, an inventory file). */
	rawBody?: { contentType: string; description: string };
	responses: Record<number, Answer>;
	/** Refusals (in the error shape) the endpoint itself makes beyond those its access rule implies. */
	refusals?: Record<number, string>;
}

const ok = (description: string, schema: z.ZodType): Record<number, Answer> => ({ 200: { description, schema } });
const created = (description: string, schema: z.ZodType): Record<number, Answer> => ({ 201: { description, schema } });
const started: Record<number, Answer> = { 202: { description: 'The run was started', schema: runStartedSchema } };
const gone: Record<number, Answer> = { 204: { description: 'Deleted' } };

export const operations: Operation[] = [
	// Meta
	{
		method: 'GET',
		route: '/api/version',
		tag: 'Meta',
		summary: 'The console’s version',
		responses: ok('Versions', versionSchema)
	},
	{
		method: 'GET',
		route: '/api/me',
		tag: 'Meta',
		summary: 'Who the caller is and what it may do',
		responses: ok('The caller', meSchema)
	},
	{
		method: 'GET',
		route: '/api/openapi.json',
		tag: 'Meta',
		summary: 'This document',
		responses: ok('The OpenAPI 3.1 document', openApiDocumentSchema)
	},

	// Users and tokens
	{
		method: 'GET',
		route: '/api/auth/tokens',
		tag: 'Users and tokens',
		summary: 'Your API tokens',
		responses: ok('Tokens', pageOf(tokenSchema))
	},
	{
		method: 'POST',
		route: '/api/auth/tokens',
		tag: 'Users and tokens',
		summary: 'Create an API token',
		body: createTokenSchema,
		example: { name: 'ci deploys', scopes: ['read'] },
		responses: created('The token, with its secret shown once', createdTokenSchema)
	},
	{
		method: 'DELETE',
		route: '/api/auth/tokens/[id]',
		tag: 'Users and tokens',
		summary: 'Revoke one of your tokens',
		responses: gone
	},
	{
		method: 'GET',
		route: '/api/users',
		tag: 'Users and tokens',
		summary: 'Every user',
		responses: ok('Users', pageOf(userSchema))
	},
	{
		method: 'POST',
		route: '/api/users',
		tag: 'Users and tokens',
		summary: 'Create a user',
		body: createUserSchema,
		responses: created('The user', userSchema)
	},
	{
		method: 'GET',
		route: '/api/users/[id]',
		tag: 'Users and tokens',
		summary: 'One user',
		responses: ok('The user', userSchema)
	},
	{
		method: 'PATCH',
		route: '/api/users/[id]',
		tag: 'Users and tokens',
		summary: 'Change a user’s role or disable them',
		body: updateUserSchema,
		responses: ok('The user', userSchema)
	},
	{
		method: 'POST',
		route: '/api/users/[id]/password',
		tag: 'Users and tokens',
		summary: 'Set a user’s password (signs them out everywhere)',
		body: resetPasswordSchema,
		responses: gone
	},

	// Audit
	{
		method: 'GET',
		route: '/api/audit',
		tag: 'Audit',
		summary: 'The audit log, a page at a time, or every row of a range as NDJSON',
		query: auditQuerySchema,
		responses: ok(
			'Audit rows (with format=ndjson: every row of the range, one such JSON object a line, application/x-ndjson)',
			pageOf(auditRowSchema)
		)
	},

	// Nodes
	{
		method: 'GET',
		route: '/api/credentials',
		tag: 'Nodes',
		summary: 'SSH credentials (public halves)',
		responses: ok('Credentials', pageOf(credentialSchema))
	},
	{
		method: 'POST',
		route: '/api/credentials',
		tag: 'Nodes',
		summary: 'Generate or import an SSH credential',
		body: createCredentialSchema,
		responses: created('The credential', credentialSchema)
	},
	{
		method: 'DELETE',
		route: '/api/credentials/[id]',
		tag: 'Nodes',
		summary: 'Delete an unused credential',
		responses: gone
	},
	{
		method: 'GET',
		route: '/api/nodes',
		tag: 'Nodes',
		summary: 'Nodes with their fleet status',
		query: nodeQuerySchema,
		responses: ok('Nodes', nodeListSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes',
		tag: 'Nodes',
		summary: 'Add a node',
		body: createNodeSchema,
		responses: created('The node', nodeSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes/bulk',
		tag: 'Nodes',
		summary: 'Change several nodes at once (add or remove a role, set the policy, delete): all or none',
		body: bulkNodesSchema,
		responses: ok(
			'What changed',
			z.object({
				action: z.enum(bulkNodeActions),
				nodes: z.array(z.object({ id: z.uuid(), name: z.string() }))
			})
		)
	},
	{ method: 'GET', route: '/api/nodes/[id]', tag: 'Nodes', summary: 'One node', responses: ok('The node', nodeSchema) },
	{
		method: 'PATCH',
		route: '/api/nodes/[id]',
		tag: 'Nodes',
		summary: 'Change a node',
		body: updateNodeSchema,
		responses: ok('The node', nodeSchema)
	},
	{ method: 'DELETE', route: '/api/nodes/[id]', tag: 'Nodes', summary: 'Remove a node', responses: gone },
	{
		method: 'GET',
		route: '/api/nodes/[id]/appliance',
		tag: 'Appliances',
		summary: 'An appliance’s slots, image updates and fallbacks',
		responses: ok('The appliance', applianceOverviewSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/check',
		tag: 'Nodes',
		summary: 'Check a node now (connect, read facts)',
		responses: ok('What the check found', checkResultSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/host-key/accept',
		tag: 'Nodes',
		summary: 'Accept the host key a node presents',
		body: acceptHostKeySchema,
		responses: ok('The node', nodeSchema)
	},
	{
		method: 'POST',
		route: '/api/inventory/import',
		tag: 'Nodes',
		summary: 'Import nodes from an Ansible inventory (INI or YAML)',
		query: inventoryImportQuerySchema,
		rawBody: { contentType: 'text/plain', description: 'The inventory file itself' },
		responses: {
			...ok('The plan (a dry run or nothing new)', inventoryImportAnswerSchema),
			...created('What was imported', inventoryImportAnswerSchema)
		}
	},

	// Code sync
	{
		method: 'GET',
		route: '/api/roles',
		tag: 'Code sync',
		summary: 'Roles',
		responses: ok('Roles', listOf(codeRoleAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/roles',
		tag: 'Code sync',
		summary: 'Define a role',
		body: createRoleSchema,
		responses: created('The role', codeRoleAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/roles/[name]',
		tag: 'Code sync',
		summary: 'One role',
		responses: ok('The role', codeRoleAnswerSchema)
	},
	{
		method: 'PATCH',
		route: '/api/roles/[name]',
		tag: 'Code sync',
		summary: 'Change a role',
		body: updateRoleSchema,
		responses: ok('The role', codeRoleAnswerSchema)
	},
	{ method: 'DELETE', route: '/api/roles/[name]', tag: 'Code sync', summary: 'Delete a role', responses: gone },
	{
		method: 'POST',
		route: '/api/roles/[name]/pin',
		tag: 'Code sync',
		summary: 'Pin a role to a commit',
		body: pinSchema,
		responses: ok('The pin', pinAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/roles/[name]/provisioning',
		tag: 'Code sync',
		summary: 'A role’s provisioning definition',
		responses: ok('The definition', provisioningAnswerSchema)
	},
	{
		method: 'PUT',
		route: '/api/roles/[name]/provisioning',
		tag: 'Code sync',
		summary: 'Save a role’s provisioning definition',
		body: provisioningDefinitionSchema,
		responses: ok('The definition', provisioningAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/agent',
		tag: 'Pull agents',
		summary: 'Enrol the node’s pull agent, or give it a new secret (shown this once)',
		responses: created('The enrolment and its secret', agentEnrolledSchema)
	},
	{
		method: 'GET',
		route: '/api/nodes/[id]/agent',
		tag: 'Pull agents',
		summary: 'The node’s agent: when it enrolled, last polled, and its version',
		responses: ok('The enrolment', agentEnrolmentSchema)
	},
	{
		method: 'DELETE',
		route: '/api/nodes/[id]/agent',
		tag: 'Pull agents',
		summary: 'Revoke the node’s agent',
		responses: gone
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/agent/enrol-token',
		tag: 'Pull agents',
		summary:
			'A one-time token the node’s agent exchanges for its secret (shown this once; a new one replaces a waiting one)',
		body: createEnrolTokenSchema,
		example: { expires_in_minutes: 60 },
		responses: created('The token and when it expires', agentEnrolTokenSchema)
	},
	{
		method: 'POST',
		route: '/api/agents/enrol',
		tag: 'Pull agents',
		summary:
			'An agent exchanges its one-time enrolment token for its node’s secret; a missing, unknown, used or expired token is a 401 naming its header',
		headers: agentEnrolHeadersSchema,
		responses: created('The enrolment and the agent’s secret', agentEnrolledSchema),
		refusals: { 401: 'The token is missing, not known for this node, already used, or expired' }
	},
	{
		method: 'POST',
		route: '/api/updates/next',
		tag: 'Pull agents',
		summary: 'An agent’s signed poll: the update its node should run, if any (docs/pull-agent.md)',
		body: agentNextSchema,
		responses: ok('The job, or null, and when to poll again; signed by the console', agentNextAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/appliances/checkin',
		tag: 'Pull agents',
		summary: 'An appliance’s signed check-in: whether an update waits for it (docs/pull-agent.md)',
		responses: ok('Whether an update is available, and which; signed by the console', applianceCheckinAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/updates/report',
		tag: 'Pull agents',
		summary: 'An agent’s signed report of one step of its job',
		body: agentReportSchema,
		responses: ok(
			'Whether it was applied (a resent report is not), and the job’s state; signed by the console',
			agentReportAnswerSchema
		)
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/mark-synced',
		tag: 'Code sync',
		summary: 'Record the commit a node runs (deployed outside the console)',
		body: markSyncedSchema,
		responses: ok('The node’s versions', nodeVersionsAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/nodes/[id]/provision',
		tag: 'Code sync',
		summary: 'Provision a role on a node',
		body: provisionSchema,
		responses: { 202: { description: 'The run was started', schema: z.object({ run_id: z.uuid() }) } }
	},
	{
		method: 'POST',
		route: '/api/code-source/notify',
		tag: 'Code sync',
		summary: 'Tell the console about a new commit (CI webhook)',
		body: notifySchema,
		responses: ok('What the commit changed', notifyAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/updates/trigger',
		tag: 'Code sync',
		summary: 'Plan or start a code update',
		body: triggerSchema,
		responses: {
			...ok('The plan (dry run)', z.object({ plan: codePlanSchema })),
			202: {
				description: 'The run was started, with its plan',
				schema: z.object({ run_id: z.uuid(), plan: codePlanSchema })
			}
		}
	},
	{
		method: 'GET',
		route: '/api/updates/status',
		tag: 'Code sync',
		summary: 'Runs and rollouts under way and recent',
		query: updatesStatusQuerySchema,
		responses: ok('Status', updatesStatusSchema)
	},

	// System updates
	{
		method: 'GET',
		route: '/api/updates/system',
		tag: 'System updates',
		summary: 'Pending package updates by node',
		responses: ok('Nodes and their updates', listOf(nodeUpdatesAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/updates/system/scan',
		tag: 'System updates',
		summary: 'Scan nodes for package updates',
		body: scanRequestSchema,
		responses: started
	},
	{
		method: 'POST',
		route: '/api/updates/system/[node_id]',
		tag: 'System updates',
		summary: 'Apply updates on one node',
		body: nodeUpdateSchema,
		responses: started
	},
	{
		method: 'GET',
		route: '/api/updates/system/holds',
		tag: 'System updates',
		summary: 'Package holds',
		responses: ok('Holds', listOf(holdAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/updates/system/holds',
		tag: 'System updates',
		summary: 'Hold packages back',
		body: holdSchema,
		responses: created('The hold', holdAnswerSchema)
	},
	{
		method: 'DELETE',
		route: '/api/updates/system/holds/[id]',
		tag: 'System updates',
		summary: 'Release a hold',
		responses: gone
	},
	{
		method: 'GET',
		route: '/api/updates/system/windows',
		tag: 'System updates',
		summary: 'Maintenance windows',
		responses: ok('Windows', listOf(windowAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/updates/system/windows',
		tag: 'System updates',
		summary: 'Define a maintenance window',
		body: windowSchema,
		responses: created('The window', windowAnswerSchema)
	},
	{
		method: 'DELETE',
		route: '/api/updates/system/windows/[id]',
		tag: 'System updates',
		summary: 'Delete a window',
		responses: gone
	},
	{
		method: 'POST',
		route: '/api/updates/system/windows/[id]/skip',
		tag: 'System updates',
		summary: 'Skip (or unskip) a window’s next opening',
		body: skipSchema,
		responses: ok('The window', windowAnswerSchema)
	},

	// Releases and rollouts
	{
		method: 'GET',
		route: '/api/releases',
		tag: 'Releases and rollouts',
		summary: 'Releases, newest first',
		query: releaseListQuerySchema,
		responses: ok('Releases', pageOf(releaseAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/releases',
		tag: 'Releases and rollouts',
		summary: 'Register a signed release manifest',
		body: manifestSchema,
		responses: created('The release', releaseAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/releases/[id]',
		tag: 'Releases and rollouts',
		summary: 'One release and the nodes on it',
		responses: ok('The release', releaseWithNodesSchema)
	},
	{
		method: 'GET',
		route: '/api/rollouts',
		tag: 'Releases and rollouts',
		summary: 'Rollouts',
		query: rolloutListQuerySchema,
		responses: ok('Rollouts', rolloutListSchema)
	},
	{
		method: 'POST',
		route: '/api/rollouts',
		tag: 'Releases and rollouts',
		summary: 'Start a staged rollout',
		body: createRolloutSchema,
		responses: {
			...ok('The preview (dry_run)', z.object({ preview: rolloutPreviewSchema })),
			...created('The rollout, with the stages it was created with', createdRolloutSchema)
		}
	},
	{
		method: 'POST',
		route: '/api/rollouts/preview',
		tag: 'Releases and rollouts',
		summary: 'Which nodes each stage would reach',
		body: createRolloutSchema,
		responses: ok('The preview', z.object({ preview: rolloutPreviewSchema }))
	},
	{
		method: 'GET',
		route: '/api/rollouts/[id]',
		tag: 'Releases and rollouts',
		summary: 'One rollout with its stages’ progress and its nodes',
		responses: ok('The rollout', rolloutDetailSchema)
	},
	...(['advance', 'pause', 'resume', 'cancel', 'rollback'] as const).map((verb): Operation => ({
		method: 'POST',
		route: `/api/rollouts/[id]/${verb}`,
		tag: 'Releases and rollouts',
		summary: `${verb[0]!.toUpperCase()}${verb.slice(1)} a rollout`,
		responses: ok('The rollout', rolloutAnswerSchema)
	})),

	// Appliances
	{
		method: 'GET',
		route: '/api/appliances/images',
		tag: 'Appliances',
		summary: 'Appliance images',
		responses: ok('Images', listOf(imageAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/appliances/images',
		tag: 'Appliances',
		summary: 'Declare an image before uploading it',
		body: declareImageSchema,
		responses: created('The image', imageAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/fleet/updates',
		tag: 'Appliances',
		summary: "An uploaded image's rollout to the appliances and their maintenance window, in one body",
		body: fleetUpdateSchema,
		responses: created('The release, image, rollout and windows', fleetUpdateAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/appliances/images/[id]',
		tag: 'Appliances',
		summary: 'One image (Upload-Offset: bytes received)',
		responses: ok('The image', imageAnswerSchema)
	},
	{
		method: 'PUT',
		route: '/api/appliances/images/[id]/content',
		tag: 'Appliances',
		summary: 'Upload (or resume uploading) an image’s bytes',
		rawBody: {
			contentType: 'application/octet-stream',
			description: 'The image bytes from the Upload-Offset header on'
		},
		responses: ok('The image', imageAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/appliances/push',
		tag: 'Appliances',
		summary: 'Push an image to appliances',
		body: pushSchema,
		responses: { 201: { description: 'The run was started', schema: runStartedSchema } }
	},
	{
		method: 'GET',
		route: '/api/appliances/updates',
		tag: 'Appliances',
		summary: 'Appliance updates (A/B slot states)',
		query: applianceUpdatesQuerySchema,
		responses: ok('Updates', listOf(applianceUpdateAnswerSchema))
	},
	{
		method: 'GET',
		route: '/api/appliances/bad-releases',
		tag: 'Appliances',
		summary: 'Releases marked bad after a fallback',
		responses: ok('Marks', listOf(badReleaseAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/appliances/bad-releases/[id]/clear',
		tag: 'Appliances',
		summary: 'Clear a bad-release mark',
		responses: ok('The mark', badReleaseAnswerSchema)
	},

	// Certificates
	{
		method: 'GET',
		route: '/api/security/certificates',
		tag: 'Certificates',
		summary: 'Certificates found on nodes',
		responses: ok('Inventory', listOf(certificateAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/security/certificates/scan',
		tag: 'Certificates',
		summary: 'Scan nodes for certificates',
		body: scanSchema,
		responses: started
	},
	{
		method: 'POST',
		route: '/api/security/certificates/report',
		tag: 'Certificates',
		summary: 'Report certificates found by an agent',
		body: reportSchema,
		responses: created('What was recorded', z.object({ node: z.string(), recorded: z.int() }))
	},
	{
		method: 'POST',
		route: '/api/security/certificates/rotate',
		tag: 'Certificates',
		summary: 'Plan or start a certificate rotation',
		body: rotateSchema,
		responses: {
			...ok('The plan (dry run)', z.object({ plan: certRotationPlanSchema })),
			202: {
				description: 'The run was started, with its plan',
				schema: z.object({ run_id: z.uuid(), plan: certRotationPlanSchema })
			}
		}
	},
	{
		method: 'GET',
		route: '/api/security/certificates/ca',
		tag: 'Certificates',
		summary: 'Certificate authorities',
		responses: ok('Authorities', listOf(authorityAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/security/certificates/ca',
		tag: 'Certificates',
		summary: 'Create the internal CA',
		body: createCaSchema,
		responses: created('The authority', authorityAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/security/certificates/ca/import',
		tag: 'Certificates',
		summary: 'Import a CA with its key',
		body: importCaSchema,
		responses: created('The authority', authorityAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/security/certificates/ca/trust',
		tag: 'Certificates',
		summary: 'Trust an outside CA',
		body: trustCaSchema,
		responses: created('The authority', authorityAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/security/certificates/issued',
		tag: 'Certificates',
		summary: 'Certificates the internal CA issued (?format=csv for a download)',
		query: issuedQuerySchema,
		responses: ok('Issued certificates (with format=csv: a text/csv download)', listOf(issuedAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/security/certificates/issued/[id]/revoke',
		tag: 'Certificates',
		summary: 'Revoke an issued certificate',
		body: revokeSchema,
		responses: ok('The certificate', issuedAnswerSchema)
	},
	{
		method: 'GET',
		route: '/api/security/certificates/crl',
		tag: 'Certificates',
		summary: 'The internal CA’s CRL (PEM)',
		responses: { 200: { description: 'The CRL', contentType: 'application/pkix-crl' } }
	},
	{
		method: 'GET',
		route: '/api/security/certificates/roles',
		tag: 'Certificates',
		summary: 'Certificate roles',
		responses: ok('Roles', listOf(certRoleAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/security/certificates/roles',
		tag: 'Certificates',
		summary: 'Define a certificate role',
		body: certRoleSchema,
		responses: created('The role', certRoleAnswerSchema)
	},

	// SSH keys
	{
		method: 'POST',
		route: '/api/ssh-keys/rotate',
		tag: 'SSH keys',
		summary: 'Rotate the fleet’s SSH key (or a dry run)',
		body: rotateKeysSchema,
		responses: {
			...ok('The dry run: what each host would go through', keyRotationDryRunSchema),
			202: {
				description: 'The rotation was started',
				schema: z.object({ run_id: z.uuid().nullable(), rotation_id: z.uuid() })
			}
		}
	},
	{
		method: 'GET',
		route: '/api/ssh-keys/rotations',
		tag: 'SSH keys',
		summary: 'The 50 most recent key rotations, newest first',
		responses: ok('Rotations', listOf(keyRotationAnswerSchema))
	},
	{
		method: 'GET',
		route: '/api/ssh-keys/rotations/[id]',
		tag: 'SSH keys',
		summary: 'A key rotation: its phases and their runs, its nodes, an abort and its cleanup',
		responses: ok('The rotation', keyRotationAnswerSchema)
	},
	{
		method: 'POST',
		route: '/api/ssh-keys/rotations/[id]/retry',
		tag: 'SSH keys',
		summary: 'Try a finished rotation’s failed nodes again',
		responses: {
			202: {
				description: 'A catch-up run takes the failed nodes through every phase again',
				schema: z.object({ run_id: z.uuid(), rotation_id: z.uuid(), nodes: z.array(z.string()) })
			}
		},
		refusals: {
			404: 'No such rotation',
			409: 'The rotation is running or aborted, is finishing nodes already, or has no failed node'
		}
	},

	// Notifications
	{
		method: 'GET',
		route: '/api/notify/channels',
		tag: 'Notifications',
		summary: 'Notification channels',
		responses: ok('Channels', pageOf(channelAnswerSchema))
	},
	{
		method: 'POST',
		route: '/api/notify/channels',
		tag: 'Notifications',
		summary: 'Add a channel',
		body: createChannelSchema,
		responses: created('The channel, with its signing secret shown once', createdChannelSchema)
	},
	{
		method: 'GET',
		route: '/api/notify/channels/[id]',
		tag: 'Notifications',
		summary: 'One channel and its deliveries',
		query: deliveriesQuerySchema,
		responses: ok('The channel', channelWithDeliveriesSchema)
	},
	{
		method: 'DELETE',
		route: '/api/notify/channels/[id]',
		tag: 'Notifications',
		summary: 'Delete a channel',
		responses: gone
	},
	{
		method: 'POST',
		route: '/api/notify/channels/[id]/test',
		tag: 'Notifications',
		summary: 'Send a test notification',
		responses: { 202: { description: 'Queued', schema: z.object({ delivery_id: z.uuid() }) } }
	},
	{
		method: 'GET',
		route: '/api/notify/settings',
		tag: 'Notifications',
		summary: 'Delivery settings',
		responses: ok('Settings', notifySettingsSchema)
	},
	{
		method: 'PUT',
		route: '/api/notify/settings',
		tag: 'Notifications',
		summary: 'Change delivery settings',
		body: notifySettingsSchema,
		responses: ok('Settings', notifySettingsSchema)
	},

	// Runs and events
	{
		method: 'GET',
		route: '/api/runs',
		tag: 'Runs and events',
		summary: 'Runs, newest first',
		query: runQuerySchema,
		responses: ok('Runs', runListSchema)
	},
	{
		method: 'POST',
		route: '/api/runs',
		tag: 'Runs and events',
		summary: 'Start a look-only run (e.g. check)',
		body: createRunSchema,
		responses: started
	},
	{
		method: 'GET',
		route: '/api/runs/[id]',
		tag: 'Runs and events',
		summary: 'One run with its tasks and steps',
		responses: ok('The run', runDetailSchema)
	},
	...(['cancel', 'pause', 'resume'] as const).map((verb): Operation => ({
		method: 'POST',
		route: `/api/runs/[id]/${verb}`,
		tag: 'Runs and events',
		summary: `${verb[0]!.toUpperCase()}${verb.slice(1)} a run`,
		responses: ok('The run', runSchema)
	})),
	{
		method: 'POST',
		route: '/api/runs/[id]/retry-failed',
		tag: 'Runs and events',
		summary: 'Retry a run’s failed tasks as a new run',
		responses: started
	},
	{
		method: 'GET',
		route: '/api/runs/[id]/events',
		tag: 'Runs and events',
		summary: 'A run’s events, live (Server-Sent Events)',
		query: eventStreamQuerySchema,
		headers: eventStreamHeadersSchema,
		responses: { 200: { description: 'An event stream', contentType: 'text/event-stream' } }
	},
	{
		method: 'GET',
		route: '/api/runs/[id]/log',
		tag: 'Runs and events',
		summary: 'A run’s whole output as text',
		responses: { 200: { description: 'The log', contentType: 'text/plain' } }
	},
	{
		method: 'GET',
		route: '/api/events',
		tag: 'Runs and events',
		summary: 'Every engine event, live (Server-Sent Events; ?types= filters)',
		query: eventStreamQuerySchema,
		headers: eventStreamHeadersSchema,
		responses: { 200: { description: 'An event stream', contentType: 'text/event-stream' } }
	}
];
