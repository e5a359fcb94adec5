import { json } from '@sveltejs/kit';
import { z } from 'zod';
import { releaseListQuerySchema } from '$lib/schemas/releases';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson, readQuery } from '$lib/server/http/api';
import { createRelease, listReleases, presentRelease } from '$lib/server/releases/releases';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const q = readQuery(url, releaseListQuerySchema);
	const rows = await listReleases({ limit: q.limit + 1, cursor: q.cursor });
	const page = rows.slice(0, q.limit);
	return json({
		items: page.map(presentRelease),
		next_cursor: rows.length > q.limit ? page.at(-1)!.createdAt.toISOString() : null
	});
});

/** A signed manifest (docs/releases.md): stored only when its signature verifies. */
export const POST: RequestHandler = apiHandler(async (event) => {
	// The manifest is checked as sent: its signature covers exactly these bytes' canonical form.
	const body = await readJson(event.request, z.unknown());
	return json(presentRelease(await createRelease(actorOf(event), body)), { status: 201 });
});
