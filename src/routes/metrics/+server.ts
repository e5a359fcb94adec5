import { metricsRegistry as registry } from '$lib/server/engine';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = async () =>
	new Response(await registry.metrics(), { headers: { 'content-type': registry.contentType } });
