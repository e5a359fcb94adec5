import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { getImage, presentImage } from '$lib/server/appliances/images';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The image, with `received_bytes`: where an interrupted upload continues. */
export const GET: RequestHandler = apiHandler(async (event) => {
	const image = await getImage(validate(uuidSchema, event.params.id));
	return json(presentImage(image), { headers: { 'Upload-Offset': String(image.receivedBytes) } });
});
