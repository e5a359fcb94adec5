import { json } from '@sveltejs/kit';
import { pingDatabase } from '$lib/server/db';
import type { RequestHandler } from './$types';

/** For load balancers and process supervisors: 200 only when the database answers. */
export const GET: RequestHandler = async () => {
	const ok = await pingDatabase();
	return json(ok ? { ok: true } : { ok: false, error: 'database unreachable' }, {
		status: ok ? 200 : 503,
		headers: { 'cache-control': 'no-store' }
	});
};
