import { json } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { applianceOverview } from '$lib/server/appliances/slots';
import { apiHandler, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** An appliance's slots, updates and fallbacks (docs/appliances.md, "The appliance's page"). */
export const GET: RequestHandler = apiHandler(async ({ params }) =>
	json(await applianceOverview(validate(uuidSchema, params.id)))
);
