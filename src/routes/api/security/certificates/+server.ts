import { json } from '@sveltejs/kit';
import { listInventory } from '$lib/server/certs/inventory';
import { apiHandler } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The inventory (docs/certificates.md): per node and endpoint or path, soonest expiry first. */
export const GET: RequestHandler = apiHandler(async () => json({ items: await listInventory() }));
