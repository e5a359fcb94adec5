import { auditQuerySchema } from '$lib/schemas/audit';
import { describeFieldErrors, fieldErrors } from '$lib/schemas/errors';
import { listAudit } from '$lib/server/audit';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ url }) => {
	const raw = Object.fromEntries([...url.searchParams].filter(([, v]) => v !== ''));
	const parsed = auditQuerySchema.safeParse(raw);
	if (!parsed.success) {
		return { items: [], nextCursor: null, filters: raw, error: describeFieldErrors(fieldErrors(parsed.error)) };
	}
	const page = await listAudit(parsed.data);
	return { ...page, filters: raw, error: null };
};
