import { json } from '@sveltejs/kit';
import { createEnrolTokenSchema } from '$lib/schemas/agents';
import { uuidSchema } from '$lib/schemas/common';
import { createEnrolToken } from '$lib/server/agents/enrol-tokens';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A one-time token the node's agent exchanges for its secret (docs/pull-agent.md, "Enrolment"); shown this once. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const input = await readJson(event.request, createEnrolTokenSchema, { maxBytes: 4096 });
	return json(await createEnrolToken(actorOf(event), id, input), { status: 201 });
});
