import { json } from '@sveltejs/kit';
import { triggerSchema } from '$lib/schemas/code-sync';
import { actorOf } from '$lib/server/audit';
import { triggerUpdate } from '$lib/server/codesync/plan';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Update All (docs/code-sync.md): `dry_run` answers the plan; otherwise the run starts, its id back at once. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, triggerSchema);
	const { plan, runId } = await triggerUpdate(actorOf(event), input);
	if (!runId) return json({ plan });
	return json({ run_id: runId, plan }, { status: 202 });
});
