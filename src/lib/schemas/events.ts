import { z } from 'zod';

/** Every event type the console publishes on its event streams (docs/api.md describes their data). */
export const eventTypes = [
	'run.created',
	'run.state',
	'task.state',
	'task.output',
	'step.started',
	'step.ended',
	'node.code',
	'role.changed',
	'code.commit',
	'sweep.ended',
	'rollout.created',
	'rollout.state',
	'rollout.stage',
	'rollout.paused'
] as const;

const known = new Set<string>(eventTypes);
const families = new Set(eventTypes.map((t) => t.slice(0, t.indexOf('.'))));

/**
 * `?types=` of the event streams: comma-separated event types, or a family as `task.*` (every type that
 * starts with `task.`). Parsed into the list of patterns; anything unknown fails, so that a typo does not
 * silently leave a page without the events it waits for.
 */
export const eventTypesSchema = z
	.string()
	.max(1_000, 'is too long')
	.transform((raw, ctx) => {
		const patterns = [...new Set(raw.split(',').map((p) => p.trim()))].filter(Boolean);
		const unknown = patterns.filter((p) => !(known.has(p) || (p.endsWith('.*') && families.has(p.slice(0, -2)))));
		if (!patterns.length || unknown.length) {
			ctx.addIssue({
				code: 'custom',
				message: `${unknown.length ? `unknown event type ${unknown.join(', ')}; ` : ''}give event types such as run.state,task.* (known: ${eventTypes.join(', ')})`
			});
			return z.NEVER;
		}
		return patterns;
	});

/** Whether an event of `type` matches one of the patterns that `eventTypesSchema` accepted. */
export function matchesEventTypes(patterns: readonly string[], type: string): boolean {
	return patterns.some((p) => (p.endsWith('.*') ? type.startsWith(p.slice(0, -1)) : type === p));
}
