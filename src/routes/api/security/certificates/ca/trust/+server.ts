import { json } from '@sveltejs/kit';
import { trustCaSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { presentAuthority, trustAuthority } from '$lib/server/certs/authority';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Adds a CA (certificate only) that the inventory verifies chains against. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const ca = await trustAuthority(
		actorOf(event),
		await readJson(event.request, trustCaSchema, { maxBytes: 256 * 1024 })
	);
	return json(presentAuthority(ca), { status: 201 });
});
