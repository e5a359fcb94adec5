import { json } from '@sveltejs/kit';
import { agentEnrolSchema } from '$lib/schemas/agents';
import { enrolTokenOf, exchangeEnrolToken } from '$lib/server/agents/enrol-tokens';
import { clientIp } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/**
 * A pull agent's one-time enrolment (docs/pull-agent.md, "Enrolment"): its token for its node's secret. No
 * session or signature: the token (in `X-Flotilla-Enrol-Token`) is the credential, refused (401) when missing,
 * unknown, used or expired.
 */
export const POST: RequestHandler = apiHandler(async (event) => {
	// The credential first: without one, nothing else is read.
	const token = enrolTokenOf(event.request.headers);
	const input = await readJson(event.request, agentEnrolSchema, { maxBytes: 4096 });
	return json(await exchangeEnrolToken(token, input, clientIp(event)), { status: 201 });
});
