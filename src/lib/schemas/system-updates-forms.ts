import { z } from 'zod';
import { fromText, wrongType } from './common';
import { nodeRefSchema, scanScheduleSchema, skipSchema, stagesSchema, windowSchema } from './system-updates';

export const scheduleFormSchema = scanScheduleSchema;

/** The System Updates page's forms: the nodes ticked (or one node's button), and what to do to them. */
const nodesField = z.preprocess(
	(v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]),
	z.array(nodeRefSchema, { error: 'must be a list of nodes' }).max(10_000, 'at most 10000 nodes')
);

export const scanFormSchema = z.object({ nodes: nodesField }).strict();

export const applyFormSchema = z
	.object({
		nodes: nodesField.refine((n) => n.length > 0, 'tick at least one node'),
		mode: z.enum(['policy', 'force_full', 'reboot'], { error: 'must be policy, force_full or reboot' }),
		/** Staged patching: labels typed in order, separated by spaces or commas. */
		stages: z.preprocess((v) => (typeof v === 'string' ? v.split(/[\s,]+/).filter(Boolean) : (v ?? [])), stagesSchema),
		/** Hours each stage must go without a failure before the next one starts (with stages only). */
		soak_hours: fromText(
			z
				.number(wrongType('must be a number of hours'))
				.min(0, 'must be 0 or more')
				.max(720, 'must be at most 720 hours (30 days)')
		).default(24),
		/** Set by the confirmation dialog: without it the page only shows what would happen. */
		confirm: z.enum(['1']).optional(),
		/**
		 * The plan the dialog showed, one `<node id> <package> <candidate>` per package: what the operator approved,
		 * so that each node's update refuses anything else (docs/system-updates.md, "Apply").
		 */
		approved: z.preprocess(
			(v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]),
			z
				.array(
					z
						.string(wrongType('must be "<node id> <package> <candidate>"'))
						.regex(/^[0-9a-f-]{36} [a-z0-9][a-z0-9+.-]+ [^\s]{1,256}$/, 'must be "<node id> <package> <candidate>"')
						.transform((line) => {
							const [node, name, candidate] = line.split(' ') as [string, string, string];
							return { node, name, candidate };
						}),
					{ error: 'must be a list of planned packages' }
				)
				.max(100_000, 'at most 100000 packages')
		)
	})
	.strict();

/** The page's window form: the API's window, its days ticked as checkboxes (one ticked day is a string). */
export const windowFormSchema = z.preprocess(
	(v) =>
		v && typeof v === 'object' && !Array.isArray(v)
			? { ...v, days: 'days' in v ? (Array.isArray(v.days) ? v.days : [v.days]) : [] }
			: v,
	windowSchema
);

export const windowIdFormSchema = z.object({ id: z.uuid({ error: 'must be a window id' }) }).strict();

export const skipFormSchema = z
	.object({
		id: z.uuid({ error: 'must be a window id' }),
		skip: z.enum(['true', 'false'], { error: 'must be true or false' })
	})
	.strict()
	.transform((v) => ({ id: v.id, ...skipSchema.parse({ skip: v.skip === 'true' }) }));
