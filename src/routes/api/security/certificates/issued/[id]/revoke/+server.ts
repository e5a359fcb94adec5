import { json } from '@sveltejs/kit';
import { revokeSchema } from '$lib/schemas/certificates';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { presentIssued, revokeIssued } from '$lib/server/certs/issued';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Revokes a certificate the internal CA issued; the next CRL lists it. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { reason } = await readJson(event.request, revokeSchema);
	return json(presentIssued(await revokeIssued(actorOf(event), id, reason)));
});
