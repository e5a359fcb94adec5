import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { provisionSchema } from '$lib/schemas/provisioning';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { startProvisioning } from '$lib/server/provisioning/provision';
import type { RequestHandler } from './$types';

/** Provisions the node for a role: the six phases of docs/provisioning.md, or the ones named. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const input = await readJson(event.request, provisionSchema, { maxBytes: 4096 });
	const { runId } = await startProvisioning(actorOf(event), id, input);
	return json({ run_id: runId }, { status: 202 });
});
