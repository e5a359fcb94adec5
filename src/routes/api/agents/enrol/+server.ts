import { json } from '@sveltejs/kit';
import { agentEnrolSchema } from '$lib/schemas/agents';
import { exchangeEnrolToken } from '$lib/server/agents/enrol-tokens';
import { clientIp } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/**
 * A pull agent's one-time enrolment (docs/pull-agent.md, "Enrolment"): its token for its node's secret. No
 * session or signature: the token is the credential, refused (401) when unknown, used or expired.
 */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, agentEnrolSchema, { maxBytes: 4096 });
	return json(await exchangeEnrolToken(input, clientIp(event)), { status: 201 });
});
