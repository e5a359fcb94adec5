import { z } from 'zod';
import { nodeNameSchema, roleNameSchema } from './nodes';
import { packageNameSchema } from './remote';

/**
 * System Updates' inputs (docs/system-updates.md). Package names reach apt's command line: they are checked as
 * Debian names (no leading dash, no shell syntax) and then quoted by the `sh` tag.
 */

/** A node by id or by name. */
export const nodeRefSchema = z.union([z.uuid(), nodeNameSchema], { error: 'must be a node id or name' });

export const scanRequestSchema = z
	.object({
		nodes: z
			.array(nodeRefSchema, { error: 'must be a list of node ids or names' })
			.min(1, 'must name at least one node (leave it out for every node)')
			.max(10_000, 'at most 10000 nodes')
			.optional(),
		refresh: z.boolean({ error: 'must be true or false' }).default(true)
	})
	.strict();

export const policySchema = z.enum(['full', 'security', 'manual'], { error: 'must be full, security or manual' });

export const nodeUpdateSchema = z
	.object({
		/** Everything pending, whatever the node's policy (emergency patching). */
		force_full: z.boolean({ error: 'must be true or false' }).default(false),
		/** Only these (of what is pending); holds still apply. */
		packages: z
			.array(packageNameSchema, { error: 'must be a list of package names' })
			.min(1, 'must name at least one package')
			.max(2_000, 'at most 2000 packages')
			.optional(),
		/** Reboot when a package asks for it: now (`now`), in the node's next window (`window`) or not (`never`). */
		reboot: z.enum(['now', 'window', 'never'], { error: 'must be now, window or never' }).optional()
	})
	.strict()
	.refine((v) => !(v.force_full && v.packages), {
		message: 'give either force_full or packages, not both',
		path: ['packages']
	});

/** A hold: shell-style pattern of package names (`linux-image-*`, `postgresql-1?`), never upgraded automatically. */
export const holdPatternSchema = z
	.string({ error: 'is required' })
	.regex(/^[a-z0-9*?][a-z0-9+.*?-]{0,127}$/, 'must be a package name or a pattern of one with * and ?');

export const holdSchema = z.discriminatedUnion(
	'scope',
	[
		z
			.object({
				scope: z.literal('node'),
				target: nodeRefSchema,
				pattern: holdPatternSchema,
				reason: z.string().max(500).optional()
			})
			.strict(),
		z
			.object({
				scope: z.literal('role'),
				target: roleNameSchema,
				pattern: holdPatternSchema,
				reason: z.string().max(500).optional()
			})
			.strict()
	],
	{ error: 'must be {scope: "node" | "role", target, pattern}' }
);

export type ScanRequest = z.infer<typeof scanRequestSchema>;
export type NodeUpdateRequest = z.infer<typeof nodeUpdateSchema>;
