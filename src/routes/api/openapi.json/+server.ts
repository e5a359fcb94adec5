import { json } from '@sveltejs/kit';
import { config } from '$lib/server/config';
import { openApiDocument } from '$lib/server/http/openapi/document';
import type { RequestHandler } from './$types';

/** The OpenAPI 3.1 document of this API, built from the schemas the endpoints validate with (docs/api.md). */
export const GET: RequestHandler = async () => json(openApiDocument(config().version));
