import { json } from '@sveltejs/kit';
import { createCredentialSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { createCredential, listCredentials } from '$lib/server/keys/credentials';
import { apiHandler, readJson } from '$lib/server/http/api';
import { presentCredential } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => {
	const items = await listCredentials();
	return json({ items: items.map(presentCredential), next_cursor: null });
});

/** Stores a private key sealed under the master key; the answer has the public half only. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, createCredentialSchema);
	const credential = await createCredential(actorOf(event), {
		name: input.name,
		privateKey: input.private_key,
		passphrase: input.passphrase || undefined
	});
	return json(presentCredential(credential), { status: 201 });
});
