import { z } from 'zod';
import { uuidSchema, wrongType } from './common';
import { hostSchema, portSchema, unixUserSchema } from './remote';

export const nodeNameSchema = z
	.string(wrongType('is required'))
	.trim()
	.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1–63 letters, digits, dots, dashes or underscores');

export const roleNameSchema = z
	.string()
	.regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be lower-case letters, digits, dashes or underscores');

const labelKey = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$/;

export const labelsSchema = z
	.record(z.string(), z.string().max(255, 'label values are at most 255 characters'), wrongType('must be an object'))
	.refine((l) => Object.keys(l).every((k) => labelKey.test(k)), 'label names must be letters, digits, _ . / -')
	.refine((l) => Object.keys(l).length <= 64, 'at most 64 labels');

export const fingerprintSchema = z
	.string(wrongType('is required'))
	.trim()
	.regex(/^SHA256:[A-Za-z0-9+/]{43}$/, 'must be a SHA-256 fingerprint as ssh-keygen -lf prints it (SHA256:…)');

const policySchema = z.enum(['full', 'security', 'manual'], { error: 'must be full, security or manual' });

const nodeFields = {
	name: nodeNameSchema,
	host: hostSchema,
	port: portSchema.default(22),
	user: unixUserSchema.default('root'),
	credential_id: uuidSchema,
	jump_node_id: uuidSchema.nullable().optional(),
	kind: z.enum(['server', 'appliance'], { error: 'must be server or appliance' }).default('server'),
	roles: z.array(roleNameSchema, wrongType('must be a list')).max(32, 'at most 32 roles').default([]),
	labels: labelsSchema.default({}),
	// Null (the default): the node takes its roles' default policy, security when none has one.
	policy: policySchema.nullable().default(null),
	control_plane: z.boolean(wrongType('must be true or false')).default(false),
	host_key_fingerprint: fingerprintSchema.optional()
};

export const createNodeSchema = z.object(nodeFields);

export const updateNodeSchema = z
	.object({
		name: nodeFields.name,
		host: nodeFields.host,
		port: portSchema,
		user: unixUserSchema,
		credential_id: nodeFields.credential_id,
		jump_node_id: nodeFields.jump_node_id,
		kind: z.enum(['server', 'appliance'], { error: 'must be server or appliance' }),
		roles: z.array(roleNameSchema).max(32, 'at most 32 roles'),
		labels: labelsSchema,
		policy: policySchema.nullable(),
		control_plane: z.boolean(wrongType('must be true or false'))
	})
	.partial()
	.strict()
	.refine((v) => Object.keys(v).length > 0, 'nothing to change');

export const acceptHostKeySchema = z.object({ fingerprint: fingerprintSchema });

export const createCredentialSchema = z.object({
	name: nodeNameSchema,
	private_key: z
		.string(wrongType('is required'))
		.min(1, 'is required')
		.max(16_384, 'is too long for an SSH private key'),
	passphrase: z.string().max(1024, 'is too long').optional()
});

export const connectionStatuses = [
	'unchecked',
	'reachable',
	'unreachable',
	'host_key_unknown',
	'host_key_changed'
] as const;

export const fleetStatuses = [
	'UP_TO_DATE',
	'OUTDATED',
	'CERT_EXPIRING',
	'CERT_CRITICAL',
	'CERT_EXPIRED',
	'PENDING',
	'UPDATING',
	'FAILED',
	'UNREACHABLE'
] as const;
export type FleetStatus = (typeof fleetStatuses)[number];

/** The columns the node list sorts by, each ascending or (`-` first) descending. */
export const nodeSortKeys = ['name', 'address', 'status', 'last_seen'] as const;
export const nodeSorts = [
	'name',
	'-name',
	'address',
	'-address',
	'status',
	'-status',
	'last_seen',
	'-last_seen'
] as const;
export type NodeSort = (typeof nodeSorts)[number];

export const nodeQuerySchema = z.object({
	q: z.string().trim().max(100).optional(),
	role: roleNameSchema.optional(),
	label: z
		.string()
		.regex(/^[^=]+=.*$/, 'must be name=value')
		.optional(),
	/** The Fleet Overview status (src/lib/server/codesync/status.ts). */
	status: z.enum(fleetStatuses, { error: `must be one of ${fleetStatuses.join(', ')}` }).optional(),
	/** Whether the console can reach it (Settings → Nodes). */
	connection: z.enum(connectionStatuses, { error: `must be one of ${connectionStatuses.join(', ')}` }).optional(),
	/** A column of the Fleet Overview, `-` first for descending; by name when absent. */
	sort: z.enum(nodeSorts, { error: `must be one of ${nodeSorts.join(', ')}` }).optional(),
	limit: z.coerce.number().int().min(1).max(500).default(50),
	/** The previous page's `next_cursor`, opaque: it carries the sort key of the last row and its name. */
	cursor: z.string().max(1024).optional()
});

/** POST /api/inventory/import: the credential its nodes use; a dry run only plans. */
export const inventoryImportQuerySchema = z.object({
	credential_id: uuidSchema,
	dry_run: z
		.enum(['1', 'true', '0', 'false'], { error: 'must be 1, true, 0 or false' })
		.optional()
		.transform((v) => v === '1' || v === 'true'),
	format: z.enum(['ini', 'yaml'], { error: 'must be ini or yaml' }).optional(),
	role_groups: z.string().max(4096, 'is too long').optional()
});

export const bulkNodeActions = ['add_role', 'remove_role', 'set_policy', 'delete'] as const;

/**
 * POST /api/nodes/bulk and the bulk bar of Settings → Nodes: one change applied to several nodes, all or none.
 * A role change names its role, a policy change its policy.
 */
export const bulkNodesSchema = z
	.object({
		action: z.enum(bulkNodeActions, { error: `must be one of ${bulkNodeActions.join(', ')}` }),
		nodes: z
			.array(uuidSchema, wrongType('must be a list'))
			.min(1, 'select at least one node')
			.max(500, 'at most 500 nodes'),
		role: roleNameSchema.optional(),
		// Not the add-node default: a policy change without a policy is refused, not read as "security".
		policy: policySchema.optional()
	})
	.strict()
	.superRefine((v, ctx) => {
		if ((v.action === 'add_role' || v.action === 'remove_role') && !v.role) {
			ctx.addIssue({ code: 'custom', path: ['role'], message: 'is required to add or remove a role' });
		}
		if (v.action === 'set_policy' && !v.policy) {
			ctx.addIssue({ code: 'custom', path: ['policy'], message: 'is required to set the policy' });
		}
	});
