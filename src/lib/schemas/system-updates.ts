import { z } from 'zod';
import { parseCron } from '$lib/clock';
import { wrongType } from './common';
import { nodeNameSchema, roleNameSchema } from './nodes';
import { packageNameSchema } from './remote';

/**
 * System Updates' inputs (docs/system-updates.md). Package names reach apt's command line: they are checked as
 * Debian names (no leading dash, no shell syntax) and then quoted by the `sh` tag.
 */

/** Whether `timeZone` is an IANA zone this runtime knows (`Europe/Berlin`, `UTC`). */
export function isTimeZone(timeZone: string): boolean {
	try {
		new Intl.DateTimeFormat('en-US', { timeZone });
		return true;
	} catch {
		return false;
	}
}

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

export const hhmm = z
	.string({ error: 'is required' })
	.regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'must be a time as HH:MM (00:00–23:59)');

/** A maintenance window for a node, a role or a label (`key=value`). */
export const windowSchema = z
	.object({
		scope: z.enum(['node', 'role', 'label'], { error: 'must be node, role or label' }),
		target: z.string({ error: 'is required' }).min(1, 'is required').max(255, 'must be at most 255 characters'),
		start: hhmm,
		end: hhmm,
		time_zone: z
			.string({ error: 'is required' })
			.refine(isTimeZone, 'must be an IANA time zone, e.g. America/New_York'),
		days: z
			.array(
				z.enum(['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'], {
					error: 'must be day names, e.g. monday'
				}),
				{
					error: 'must be a list of days'
				}
			)
			.min(1, 'must name at least one day')
			.transform((d) => d.map((day) => DAYS.indexOf(day)))
	})
	.strict()
	.superRefine((v, ctx) => {
		if (v.start === v.end) ctx.addIssue({ code: 'custom', path: ['end'], message: 'must differ from start' });
		const checked =
			v.scope === 'node'
				? nodeRefSchema.safeParse(v.target).success
				: v.scope === 'role'
					? roleNameSchema.safeParse(v.target).success
					: /^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}=.{0,255}$/.test(v.target);
		if (!checked)
			ctx.addIssue({
				code: 'custom',
				path: ['target'],
				message: `must be a ${v.scope === 'label' ? 'label as key=value' : v.scope}`
			});
	});

export const DAYS = ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'] as const;

/** Staged patching's order: labels (`key=value`, no space or comma), the first stage first. */
export const stagesSchema = z
	.array(
		z
			.string({ error: 'must be a label as key=value' })
			.regex(/^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}=[^\s,]{1,255}$/, 'must be a label as key=value'),
		wrongType('must be a list of labels (key=value)')
	)
	.max(10, 'at most 10 stages')
	.refine((l) => new Set(l).size === l.length, 'names a label twice');

export const skipSchema = z.object({ skip: z.boolean({ error: 'must be true or false' }) }).strict();

/** The fleet scan's schedule, as an admin sets it on the page: five-field cron (or `off`) in an IANA zone. */
export const scanScheduleSchema = z
	.object({
		cron: z
			.string({ error: 'is required' })
			.trim()
			.refine(
				(v) => {
					if (v === 'off') return true;
					try {
						parseCron(v);
						return true;
					} catch {
						return false;
					}
				},
				{ message: 'must be a five-field cron expression (e.g. 0 2 * * *) or off' }
			),
		time_zone: z.string({ error: 'is required' }).refine(isTimeZone, 'must be an IANA time zone, e.g. America/New_York')
	})
	.strict();
