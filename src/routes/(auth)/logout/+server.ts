import { redirect } from '@sveltejs/kit';
import { actorOf, recordAudit } from '$lib/server/audit';
import { deleteSessionCookie, invalidateSession } from '$lib/server/auth/session';
import type { RequestHandler } from './$types';

/** Ends this browser's session. Open to anyone so that a stale tab can always sign out cleanly. */
export const POST: RequestHandler = async (event) => {
	const p = event.locals.principal;
	if (p?.via === 'session' && p.sessionId) {
		await invalidateSession(p.sessionId);
		await recordAudit(actorOf(event), { action: 'auth.logout', targetType: 'user', targetId: p.user.id });
	}
	deleteSessionCookie(event.cookies, event.url.protocol === 'https:');
	redirect(303, '/login');
};
