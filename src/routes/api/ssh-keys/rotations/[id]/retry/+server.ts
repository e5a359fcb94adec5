import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { retryFailedNodes } from '$lib/server/keys/driver';
import type { RequestHandler } from './$types';

/** Tries a finished rotation's failed nodes again (docs/ssh-key-rotation.md, "Trying failed nodes again"). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { runId, nodes } = await retryFailedNodes(actorOf(event), id);
	return json({ run_id: runId, rotation_id: id, nodes }, { status: 202 });
});
