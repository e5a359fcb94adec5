import { json } from '@sveltejs/kit';
import { bulkNodesSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { bulkNodes } from '$lib/server/fleet/bulk';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** One change to several nodes, all or none (docs/api.md). */
export const POST: RequestHandler = apiHandler(async (event) =>
	json(await bulkNodes(actorOf(event), await readJson(event.request, bulkNodesSchema)))
);
