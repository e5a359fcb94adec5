import { json } from '@sveltejs/kit';
import { createCaSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { createInternalCa, listAuthorities, presentAuthority } from '$lib/server/certs/authority';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The CAs the console knows: the internal CA (never its key) and the trusted ones. */
export const GET: RequestHandler = apiHandler(async () =>
	json({ items: (await listAuthorities()).map(presentAuthority) })
);

/** Creates the internal CA; its key is made here and stored only sealed. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const ca = await createInternalCa(actorOf(event), await readJson(event.request, createCaSchema));
	return json(presentAuthority(ca), { status: 201 });
});
