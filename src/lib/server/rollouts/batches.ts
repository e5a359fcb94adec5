import type { BatchRolloutInput, CreateRolloutInput } from '$lib/schemas/releases';
import type { Actor } from '$lib/server/audit';
import { ServiceError } from '$lib/server/errors';
import { createRollout } from './rollouts';

/** A rollout has at most this many stages (the native body's limit), so at most this many batches. */
const MAX_BATCHES = 10;

/**
 * The stage percentages that cut `total` nodes into batches of `size` (cumulative), using that stages take
 * `ceil(percent × total / 100)` nodes: each stage's percent is the smallest that reaches its batch's end.
 * More than ten batches become ten of `ceil(total / 10)` nodes.
 */
export function batchPercents(total: number, size: number): number[] {
	const batch = Math.ceil(total / size) > MAX_BATCHES ? Math.ceil(total / MAX_BATCHES) : size;
	const percents: number[] = [];
	for (let end = batch; end < total; end += batch) {
		let p = (percents.at(-1) ?? 0) + 1;
		while (p < 100 && Math.ceil((p * total) / 100) < end) p++;
		if (p < 100) percents.push(p);
	}
	return [...percents, 100];
}

/** The same failure with the field names of the body that was sent. */
function renamed(err: unknown, names: Record<string, string>): unknown {
	if (!(err instanceof ServiceError)) return err;
	const fields = Object.fromEntries(
		Object.entries(err.fields).map(([k, v]) => [names[k.split('.')[0]!] ?? k, v] as const)
	);
	return new ServiceError(err.code, err.message, fields);
}

/**
 * A batch rollout as the native one (docs/releases.md, "Batch rollouts"): the release's nodes on the channel,
 * counted now, cut into stages of `batchSize` nodes, each after the first waiting for `advance`; no bake, and a
 * batch's nodes updated together.
 */
export async function createBatchRollout(actor: Actor, input: BatchRolloutInput) {
	const names = { release_id: 'manifestId', target: 'channel', stages: 'batchSize', concurrency: 'batchSize' };
	try {
		const base = {
			release_id: input.manifestId,
			target: { channel: input.channel },
			strategy: 'immediate',
			failure_threshold_percent: 10,
			min_finished_nodes: 3,
			concurrency: Math.min(input.batchSize, 500),
			require_approval: true,
			respect_windows: false
		} satisfies Partial<CreateRolloutInput>;
		const counted = await createRollout(actor, { ...base, dry_run: true });
		const total = counted.preview.stages.reduce((n, s) => n + s.nodes.length, 0);
		const percents = batchPercents(Math.max(total, 1), input.batchSize);
		return await createRollout(actor, {
			...base,
			id: counted.preview.id,
			strategy: percents.length > 1 ? 'staged' : 'immediate',
			stages: percents.map((percent) => ({ percent, bake_seconds: 0 })),
			dry_run: false
		});
	} catch (err) {
		throw renamed(err, names);
	}
}
