import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf, recordAudit } from '$lib/server/audit';
import { checkNode } from '$lib/server/fleet/nodes';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Connects to the node now: reachability, host key, `uname -a`, latency. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { node, result } = await checkNode(id);
	const changed = result.host_key_status === 'changed';
	await recordAudit(actorOf(event), {
		action: changed ? 'node.host_key_changed' : 'node.check',
		targetType: 'node',
		targetId: id,
		result: changed ? 'denied' : result.reachable ? 'ok' : 'error',
		details: { name: node.name, ...result }
	});
	return json(result);
});
