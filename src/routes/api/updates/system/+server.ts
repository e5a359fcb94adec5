import { json } from '@sveltejs/kit';
import { apiHandler } from '$lib/server/http/api';
import { presentNodeUpdates, systemUpdatesView } from '$lib/server/sysupdates/views';
import type { RequestHandler } from './$types';

/** Per node: policy, pending packages (security marked, with why), reboot required, services to restart, last scan. */
export const GET: RequestHandler = apiHandler(async () =>
	json({ items: (await systemUpdatesView()).map(presentNodeUpdates) })
);
