import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { acceptHostKeySchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { acceptHostKey } from '$lib/server/fleet/host-keys';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

/** Pins a node's host key: from now on the node must present exactly this key. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { fingerprint } = await readJson(event.request, acceptHostKeySchema);
	return json(presentNode(await acceptHostKey(actorOf(event), id, fingerprint)));
});
