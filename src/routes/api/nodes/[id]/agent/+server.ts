import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { enrolAgent, getEnrolment, revokeAgent } from '$lib/server/agents/enrolment';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The node's pull agent (docs/pull-agent.md, "Enrolment"): enrol it (the secret is shown this once), see it, revoke it. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	return json(await enrolAgent(actorOf(event), id), { status: 201 });
});

export const GET: RequestHandler = apiHandler(async (event) => {
	return json(await getEnrolment(validate(uuidSchema, event.params.id)));
});

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await revokeAgent(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
