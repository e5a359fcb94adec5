import { json } from '@sveltejs/kit';
import { holdSchema } from '$lib/schemas/system-updates';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { createHold, listHolds } from '$lib/server/sysupdates/holds';
import type { SysHold } from '$lib/server/db/schema';
import type { RequestHandler } from './$types';

const presentHold = (h: SysHold) => ({
	id: h.id,
	scope: h.scope,
	target: h.target,
	pattern: h.pattern,
	reason: h.reason,
	created_by: h.createdBy,
	created_at: h.createdAt
});

export const GET: RequestHandler = apiHandler(async () => json({ items: (await listHolds()).map(presentHold) }));

/** A package pattern never upgraded automatically on a node or a role's nodes. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const hold = await createHold(actorOf(event), await readJson(event.request, holdSchema));
	return json(presentHold(hold), { status: 201 });
});
