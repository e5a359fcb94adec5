import { json } from '@sveltejs/kit';
import { rotateSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { startRotation } from '$lib/server/certs/plan';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A rotation of the given nodes (or those expiring within N days, or all): `dry_run` answers the plan. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const { plan, runId } = await startRotation(actorOf(event), await readJson(event.request, rotateSchema));
	if (!runId) return json({ plan });
	return json({ run_id: runId, plan }, { status: 202 });
});
