import { json } from '@sveltejs/kit';
import { scanRequestSchema } from '$lib/schemas/system-updates';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { startScan } from '$lib/server/sysupdates/runs';
import type { RequestHandler } from './$types';

/** Scans the named nodes (every node with a pinned host key when none are named); the run's id back at once. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const run = await startScan(actorOf(event), await readJson(event.request, scanRequestSchema));
	return json({ run_id: run.id }, { status: 202 });
});
