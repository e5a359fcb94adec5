import { agentNextSchema } from '$lib/schemas/agents';
import { nextJob } from '$lib/server/agents/jobs';
import { agentEndpoint } from '$lib/server/agents/requests';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A pull agent's poll, signed by its node's secret: the update it should run, if any (docs/pull-agent.md). */
export const POST: RequestHandler = apiHandler(agentEndpoint(agentNextSchema, nextJob));
