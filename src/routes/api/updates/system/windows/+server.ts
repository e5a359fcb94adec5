import { json } from '@sveltejs/kit';
import { windowSchema } from '$lib/schemas/system-updates';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { listWindows, presentWindow, saveWindow } from '$lib/server/sysupdates/windows';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => json({ items: (await listWindows()).map(presentWindow) }));

/** Creates the window of a node, role or label, or replaces the one it had. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const window = await saveWindow(actorOf(event), await readJson(event.request, windowSchema));
	return json(presentWindow(window), { status: 201 });
});
