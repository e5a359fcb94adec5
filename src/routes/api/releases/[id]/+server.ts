import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { apiHandler, validate } from '$lib/server/http/api';
import { getRelease, presentRelease } from '$lib/server/releases/releases';
import { nodesOnRelease } from '$lib/server/releases/nodes';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ params }) => {
	const release = await getRelease(validate(uuidSchema, params.id));
	return json({ ...presentRelease(release), nodes: await nodesOnRelease(release) });
});
