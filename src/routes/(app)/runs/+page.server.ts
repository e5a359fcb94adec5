import { error } from '@sveltejs/kit';
import { runQuerySchema } from '$lib/schemas/runs';
import { listRuns } from '$lib/server/engine';
import { presentRun } from '$lib/server/http/present';
import type { PageServerLoad } from './$types';

const PAGE_SIZE = 50;

export const load: PageServerLoad = async ({ url }) => {
	const parsed = runQuerySchema.safeParse({
		state: url.searchParams.get('state') || undefined,
		cursor: url.searchParams.get('cursor') || undefined,
		limit: PAGE_SIZE
	});
	if (!parsed.success) error(400, 'Unknown filter or cursor');
	const page = await listRuns({ ...parsed.data, limit: PAGE_SIZE });
	return {
		runs: page.items.map(presentRun),
		nextCursor: page.nextCursor,
		state: parsed.data.state ?? null,
		cursor: parsed.data.cursor ?? null
	};
};
