import { json } from '@sveltejs/kit';
import { createRolloutSchema } from '$lib/schemas/releases';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { createRollout } from '$lib/server/rollouts/rollouts';
import type { RequestHandler } from './$types';

/** Which nodes would fall in which stage: the create form's preview (read-only: a dry run of the create). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, createRolloutSchema);
	const { preview } = await createRollout(actorOf(event), { ...input, dry_run: true });
	return json({ preview });
});
