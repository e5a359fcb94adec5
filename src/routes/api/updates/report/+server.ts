import { agentReportSchema } from '$lib/schemas/agents';
import { applyReport } from '$lib/server/agents/jobs';
import { agentEndpoint } from '$lib/server/agents/requests';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A pull agent's report of one step of its job, signed by its node's secret (docs/pull-agent.md). */
export const POST: RequestHandler = apiHandler(agentEndpoint(agentReportSchema, applyReport));
