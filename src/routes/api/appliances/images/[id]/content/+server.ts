import { json } from '@sveltejs/kit';
import { uploadOffsetSchema } from '$lib/schemas/appliances';
import { uuidSchema } from '$lib/schemas/common';
import { presentImage, receiveChunk } from '$lib/server/appliances/images';
import { actorOf } from '$lib/server/audit';
import { apiHandler, validate } from '$lib/server/http/api';
import { ServiceError } from '$lib/server/errors';
import type { RequestHandler } from './$types';

/**
 * One chunk of an image's bytes (`Content-Type: application/octet-stream`), starting at the `Upload-Offset`
 * header, which must be where the stored bytes end (docs/appliances.md, "Uploading an image").
 */
export const PUT: RequestHandler = apiHandler(async (event) => {
	const id = validate(uuidSchema, event.params.id);
	const type = event.request.headers.get('content-type') ?? '';
	if (!/^application\/octet-stream\b/i.test(type)) {
		throw new ServiceError('unsupported_media_type', 'Send the chunk as application/octet-stream');
	}
	const header = event.request.headers.get('upload-offset');
	const parsed = uploadOffsetSchema.safeParse(header ?? undefined);
	if (!parsed.success) {
		throw new ServiceError('validation_failed', 'Upload-Offset: where this chunk starts, in bytes', {
			'Upload-Offset':
				header === null ? 'is required: where this chunk starts, in bytes' : 'must be a whole number of bytes'
		});
	}
	const image = await receiveChunk(actorOf(event), id, parsed.data as number, event.request.body);
	return json(presentImage(image), { headers: { 'Upload-Offset': String(image.receivedBytes) } });
});
