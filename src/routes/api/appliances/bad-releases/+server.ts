import { json } from '@sveltejs/kit';
import { listBadReleases, presentBadRelease } from '$lib/server/appliances/fallbacks';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Releases marked bad for a kind of hardware after an appliance fell back on its own. */
export const GET: RequestHandler = apiHandler(async () => {
	const rows = await listBadReleases();
	return json({ items: rows.map((r) => presentBadRelease(r.mark, r.version)) });
});
