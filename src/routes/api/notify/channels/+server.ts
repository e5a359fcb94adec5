import { json } from '@sveltejs/kit';
import { createChannelSchema } from '$lib/schemas/notify';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { createChannel, listChannels } from '$lib/server/notify/channels';
import { presentChannel } from '$lib/server/notify/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => {
	const items = await listChannels();
	return json({ items: items.map(presentChannel), next_cursor: null });
});

/** Adds a channel; a webhook's signing secret is in this answer only (generated when none was given). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, createChannelSchema, { maxBytes: 16_384 });
	const { channel, secret } = await createChannel(actorOf(event), input);
	return json({ ...presentChannel(channel), secret }, { status: 201 });
});
