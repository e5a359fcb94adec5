import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { deliveriesQuerySchema } from '$lib/schemas/notify';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readQuery, validate } from '$lib/server/http/api';
import { deleteChannel, getChannel, recentDeliveries } from '$lib/server/notify/channels';
import { presentChannel, presentDelivery } from '$lib/server/notify/present';
import type { RequestHandler } from './$types';

/** The channel and its latest deliveries, each with its last response. */
export const GET: RequestHandler = apiHandler(async ({ params, url }) => {
	const channel = await getChannel(validate(uuidSchema, params.id));
	const q = readQuery(url, deliveriesQuerySchema);
	const deliveries = await recentDeliveries(channel.id, q.limit);
	return json({ ...presentChannel(channel), deliveries: deliveries.map(presentDelivery) });
});

export const DELETE: RequestHandler = apiHandler(async (event) => {
	await deleteChannel(actorOf(event), validate(uuidSchema, event.params.id));
	return new Response(null, { status: 204 });
});
