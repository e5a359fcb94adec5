import { error, redirect } from '@sveltejs/kit';
import { setupSchema } from '$lib/schemas/auth';
import { actorOf, clientIp, recordAudit } from '$lib/server/audit';
import { createSession, setSessionCookie } from '$lib/server/auth/session';
import { countUsers, createFirstAdmin } from '$lib/server/auth/users';
import { formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

// The set-up page exists only while the console has no user at all.
function gone(): never {
	error(404, 'The console is already set up. Sign in instead.');
}

export const load: PageServerLoad = async () => {
	if ((await countUsers()) > 0) gone();
	return {};
};

export const actions: Actions = {
	default: async (event) => {
		const parsed = await parseForm(event.request, setupSchema);
		if (!parsed.ok) return parsed.failure;
		let admin;
		try {
			admin = await createFirstAdmin(parsed.data);
		} catch (err) {
			return formError(err, parsed.form);
		}
		if (!admin) gone();
		await recordAudit(actorOf(event, admin.username), {
			action: 'setup.first_admin',
			targetType: 'user',
			targetId: admin.id,
			details: { username: admin.username }
		});
		const { token, session } = await createSession(admin.id, {
			ip: clientIp(event),
			userAgent: event.request.headers.get('user-agent')
		});
		setSessionCookie(event.cookies, token, session.expiresAt, event.url.protocol === 'https:');
		redirect(303, '/');
	}
};
