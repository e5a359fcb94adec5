import { json } from '@sveltejs/kit';
import { applianceUpdatesQuerySchema } from '$lib/schemas/appliances';
import { presentUpdate, recentUpdates, updatesOfRuns } from '$lib/server/appliances/records';
import { apiHandler, readQuery } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Appliance updates and their states (docs/appliances.md, "States"): of one run, or the latest. */
export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const q = readQuery(url, applianceUpdatesQuerySchema);
	const rows = q.run_id ? await updatesOfRuns([q.run_id]) : await recentUpdates();
	return json({ items: rows.map((u) => presentUpdate(u)) });
});
