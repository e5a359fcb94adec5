import { createRolloutSchema, type CreateRolloutInput } from '$lib/schemas/releases';
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
 * The create form as the API's input: the preset's stages, each with the form's one bake time (minutes), or
 * custom stages written `10, 50, 100`; targets as comma-separated lists.
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
		...(text('concurrency') ? { concurrency: text('concurrency') } : {}),
		require_approval: form.get('require_approval') === 'on',
		respect_windows: form.get('respect_windows') === 'on'
	});
}
