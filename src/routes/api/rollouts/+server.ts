import { json } from '@sveltejs/kit';
import {
	batchRolloutSchema,
	createRolloutSchema,
	jsonObjectSchema,
	rolloutListQuerySchema
} from '$lib/schemas/releases';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, readQuery, validate } from '$lib/server/http/api';
import { getRelease } from '$lib/server/releases/releases';
import { createBatchRollout } from '$lib/server/rollouts/batches';
import { driveRollout } from '$lib/server/rollouts/driver';
import { presentRollout } from '$lib/server/rollouts/present';
import { createRollout, getRollout, listRollouts } from '$lib/server/rollouts/rollouts';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const page = await listRollouts(readQuery(url, rolloutListQuerySchema));
	const items = await Promise.all(page.items.map(async (r) => presentRollout(r, await getRelease(r.releaseId))));
	return json({ items, next_cursor: page.nextCursor });
});

/**
 * Creates a rollout (201) and takes its first turn at once; `dry_run` answers the stage preview (200). A body with
 * `manifestId` is a batch rollout (docs/releases.md, "Batch rollouts"), made into the same rollout.
 */
export const POST: RequestHandler = apiHandler(async (event) => {
	const body = await readJson(event.request, jsonObjectSchema);
	const { rollout, preview } =
		'manifestId' in body
			? await createBatchRollout(actorOf(event), validate(batchRolloutSchema, body))
			: await createRollout(actorOf(event), validate(createRolloutSchema, body));
	if (!rollout) return json({ preview });
	await driveRollout(rollout.id);
	const now = await getRollout(rollout.id);
	return json({ ...presentRollout(now, await getRelease(now.releaseId)), preview }, { status: 201 });
});
