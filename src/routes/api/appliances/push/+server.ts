import { json } from '@sveltejs/kit';
import { pushSchema } from '$lib/schemas/appliances';
import { startPush } from '$lib/server/appliances/runs';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** An image to appliances now, outside a rollout: one run of the A/B flow. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const body = await readJson(event.request, pushSchema, { maxBytes: 1 << 20 });
	const run = await startPush(actorOf(event), body);
	return json({ run_id: run.id, number: run.number }, { status: 201 });
});
