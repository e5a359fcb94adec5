import { json } from '@sveltejs/kit';
import { nodeRefSchema, nodeUpdateSchema } from '$lib/schemas/system-updates';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { startNodeUpdate } from '$lib/server/sysupdates/runs';
import type { RequestHandler } from './$types';

/** Updates one node per its policy, or everything pending with `force_full`; the run's id back at once. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const node = validate(nodeRefSchema, event.params.node_id);
	const run = await startNodeUpdate(actorOf(event), node, await readJson(event.request, nodeUpdateSchema));
	return json({ run_id: run.id }, { status: 202 });
});
