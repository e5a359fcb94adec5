import { error } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { ServiceError } from '$lib/server/errors';
import { nodesOnRelease } from '$lib/server/releases/nodes';
import { getRelease, presentRelease } from '$lib/server/releases/releases';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ params }) => {
	if (!uuidSchema.safeParse(params.id).success) error(404, 'Release not found');
	try {
		const release = await getRelease(params.id);
		return { release: presentRelease(release), nodes: await nodesOnRelease(release) };
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, 'Release not found');
		throw err;
	}
};
