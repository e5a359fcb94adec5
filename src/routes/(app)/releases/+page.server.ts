import { listReleases, presentRelease } from '$lib/server/releases/releases';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async () => ({
	releases: (await listReleases({ limit: 200 })).map(presentRelease)
});
