import { json } from '@sveltejs/kit';
import { scanSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { startScan } from '$lib/server/certs/scan';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A certificate scan of the given nodes (every node with a certificate role when none are given). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const { runId, nodes } = await startScan(actorOf(event), await readJson(event.request, scanSchema));
	return json({ run_id: runId, nodes }, { status: 202 });
});
