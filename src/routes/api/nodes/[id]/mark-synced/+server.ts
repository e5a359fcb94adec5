import { json } from '@sveltejs/kit';
import { markSyncedSchema } from '$lib/schemas/code-sync';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { versionsFor, presentVersion } from '$lib/server/codesync/status';
import { markSynced } from '$lib/server/codesync/versions';
import { getNode } from '$lib/server/fleet/nodes';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** A node that deployed itself reports the commit it now runs for a role. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	await markSynced(actorOf(event), id, await readJson(event.request, markSyncedSchema));
	const node = await getNode(id);
	const versions = (await versionsFor([node])).get(id) ?? [];
	return json({ node_id: id, versions: versions.map(presentVersion) });
});
