import { json } from '@sveltejs/kit';
import { declareImageSchema } from '$lib/schemas/appliances';
import { declareImage, listImages, presentImage } from '$lib/server/appliances/images';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => {
	const rows = await listImages();
	return json({ items: rows.map((r) => presentImage(r.image, r)) });
});

/** Declares a release's image (docs/appliances.md, "Images"): its bytes follow in chunks to `…/content`. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const body = await readJson(event.request, declareImageSchema, { maxBytes: 4096 });
	return json(presentImage(await declareImage(actorOf(event), body)), { status: 201 });
});
