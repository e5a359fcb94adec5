import { json } from '@sveltejs/kit';
import { importCaSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { importInternalCa, presentAuthority } from '$lib/server/certs/authority';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Imports an existing CA with its key as the internal CA; the key is sealed at once and never returned. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const ca = await importInternalCa(
		actorOf(event),
		await readJson(event.request, importCaSchema, { maxBytes: 256 * 1024 })
	);
	return json(presentAuthority(ca), { status: 201 });
});
