import { registry } from '$lib/server/engine/metrics';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = async () =>
	new Response(await registry.metrics(), { headers: { 'content-type': registry.contentType } });
