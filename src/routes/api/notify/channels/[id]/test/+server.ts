import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { sendTest } from '$lib/server/notify/register';
import type { RequestHandler } from './$types';

/** Queues a test message; follow it among the channel's deliveries. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = await sendTest(actorOf(event), validate(uuidSchema, event.params.id));
	return json({ delivery_id: id }, { status: 202 });
});
