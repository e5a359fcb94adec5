import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { acceptHostKeySchema } from '$lib/schemas/nodes';
import { actorOf, recordAudit } from '$lib/server/audit';
import { acceptHostKey } from '$lib/server/fleet/nodes';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { presentNode } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

/** Pins a node's host key: from now on the node must present exactly this key. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { fingerprint } = await readJson(event.request, acceptHostKeySchema);
	const node = await acceptHostKey(id, fingerprint);
	await recordAudit(actorOf(event), {
		action: 'node.host_key_accept',
		targetType: 'node',
		targetId: id,
		details: { name: node.name, fingerprint }
	});
	return json(presentNode(node));
});
