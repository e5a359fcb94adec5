import { json } from '@sveltejs/kit';
import { auditQuerySchema } from '$lib/schemas/audit';
import { listAudit } from '$lib/server/audit';
import { apiHandler, readQuery } from '$lib/server/http/api';
import { presentAudit } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const q = readQuery(url, auditQuerySchema);
	const page = await listAudit(q);
	return json({ items: page.items.map(presentAudit), next_cursor: page.nextCursor?.toString() ?? null });
});
