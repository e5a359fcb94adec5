import { uuidSchema } from '$lib/schemas/common';
import { actorOf, recordAudit } from '$lib/server/audit';
import { deleteCredential } from '$lib/server/keys/credentials';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const DELETE: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	await deleteCredential(id);
	await recordAudit(actorOf(event), { action: 'credential.delete', targetType: 'credential', targetId: id });
	return new Response(null, { status: 204 });
});
