import { instantOfWallClock } from '$lib/clock';
import { createRolloutSchema, type CreateRolloutInput } from '$lib/schemas/releases';
import { isTimeZone } from '$lib/schemas/system-updates';
import { ServiceError } from '$lib/server/errors';
import { validate } from '$lib/server/http/api';
import { PRESETS } from './rollouts';

const list = (v: FormDataEntryValue | null) =>
	typeof v === 'string' && v.trim()
		? v
				.split(',')
				.map((s) => s.trim())
				.filter(Boolean)
		: undefined;

/**
 * The form's `start_at` (a datetime-local value: a wall-clock time without a zone) as the API's ISO 8601 instant,
 * read in `start_at_zone` (the browser's time zone, which the form shows; UTC when the page ran no script). Text
 * that is not a wall-clock time is passed on as it is, for the schema to refuse by its own rule.
 */
function startAtOf(text: string | undefined, zone: string | undefined): string | undefined {
	if (!text) return undefined;
	const timeZone = zone ?? 'UTC';
	if (!isTimeZone(timeZone)) {
		throw new ServiceError('validation_failed', `Unknown time zone ${timeZone}`, {
			start_at: `is in an unknown time zone, ${timeZone}`
		});
	}
	return instantOfWallClock(text, timeZone)?.toISOString() ?? text;
}

/**
 * The create form as the API's input: the preset's stages, each with the form's one bake time (minutes), or
 * custom stages written `10, 50, 100`; targets as comma-separated lists; the start as a wall-clock time in the
 * browser's time zone.
 */
export function rolloutFromForm(form: FormData): CreateRolloutInput {
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' && v.trim() ? v.trim() : undefined;
	};
	const bake = text('bake_minutes');
	const strategy = text('strategy');
	// A bake time alone applies to the preset's stages.
	const percents =
		list(form.get('percents')) ??
		(bake && strategy && strategy in PRESETS ? PRESETS[strategy as keyof typeof PRESETS].map(String) : undefined);
	const target = {
		...(list(form.get('roles')) ? { roles: list(form.get('roles')) } : {}),
		...(list(form.get('labels')) ? { labels: list(form.get('labels')) } : {}),
		...(list(form.get('nodes')) ? { nodes: list(form.get('nodes')) } : {}),
		...(text('channel') ? { channel: text('channel') } : {})
	};
	return validate(createRolloutSchema, {
		...(text('id') ? { id: text('id') } : {}),
		release_id: text('release_id'),
		strategy,
		target,
		...(percents ? { stages: percents.map((p) => ({ percent: p, ...(bake ? { bake_minutes: bake } : {}) })) } : {}),
		...(text('failure_threshold_percent') ? { failure_threshold_percent: text('failure_threshold_percent') } : {}),
		...(text('min_finished_nodes') ? { min_finished_nodes: text('min_finished_nodes') } : {}),
		...(text('concurrency') ? { concurrency: text('concurrency') } : {}),
		require_approval: form.get('require_approval') === 'on',
		respect_windows: form.get('respect_windows') === 'on',
		...(text('start_at') ? { start_at: startAtOf(text('start_at'), text('start_at_zone')) } : {})
	});
}
