import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { skipSchema } from '$lib/schemas/system-updates';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import { presentWindow, skipNextWindow } from '$lib/server/sysupdates/windows';
import type { RequestHandler } from './$types';

/** `{skip: true}` shuts the window until the end of its current or next opening; `{skip: false}` undoes it. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const { skip } = await readJson(event.request, skipSchema);
	return json(presentWindow(await skipNextWindow(actorOf(event), id, skip)));
});
