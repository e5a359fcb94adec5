import { applianceCheckin } from '$lib/server/agents/checkin';
import { agentReadEndpoint } from '$lib/server/agents/requests';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** An appliance's check-in, signed by its node's secret like an agent's poll (docs/pull-agent.md). */
export const GET: RequestHandler = apiHandler(agentReadEndpoint(applianceCheckin));
