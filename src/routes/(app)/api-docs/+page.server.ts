import { config } from '$lib/server/config';
import { openApiDocument } from '$lib/server/http/openapi/document';
import { describeOperations } from '$lib/server/http/openapi/reference';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async () => ({ tags: describeOperations(openApiDocument(config().version)) });
