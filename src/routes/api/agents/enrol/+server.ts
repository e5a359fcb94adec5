import { json } from '@sveltejs/kit';
import { exchangeEnrolToken } from '$lib/server/agents/enrol-tokens';
import { enrolHeaders } from '$lib/server/agents/requests';
import { clientIp } from '$lib/server/audit';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/**
 * A pull agent's one-time enrolment (docs/pull-agent.md, "Enrolment"): its token for its node's secret. No session
 * or signature: the token (in `X-Flotilla-Enrol-Token`, with the node in `X-Flotilla-Node`) is the credential,
 * refused (401) when missing, unknown, used or expired. There is no body to read.
 */
export const POST: RequestHandler = apiHandler(async (event) => {
	return json(await exchangeEnrolToken(enrolHeaders(event.request.headers), clientIp(event)), { status: 201 });
});
