import { redirect } from '@sveltejs/kit';
import { loginSchema } from '$lib/schemas/auth';
import { actorOf, clientIp, recordAudit } from '$lib/server/audit';
import { createSession, setSessionCookie } from '$lib/server/auth/session';
import { claimLoginAttempt, clearLoginFailures, recordLoginFailure, throttleKeys } from '$lib/server/auth/throttle';
import { authenticate, countUsers } from '$lib/server/auth/users';
import { failWith, parseForm } from '$lib/server/http/forms';
import { safeNext } from '$lib/server/http/redirects';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ locals, url }) => {
	if (locals.principal) redirect(303, safeNext(url.searchParams.get('next')));
	if ((await countUsers()) === 0) redirect(303, '/setup');
	return {};
};

export const actions: Actions = {
	default: async (event) => {
		const parsed = await parseForm(event.request, loginSchema);
		if (!parsed.ok) return parsed.failure;
		const { username, password } = parsed.data;
		const keys = throttleKeys(clientIp(event) ?? 'unknown', username);
		const audit = (result: 'ok' | 'denied', reason?: string, userId?: string) =>
			recordAudit(actorOf(event, username.toLowerCase()), {
				action: 'auth.login',
				targetType: 'user',
				targetId: userId ?? null,
				result,
				details: reason ? { reason } : {}
			});

		// Claimed before the password is checked, so a throttled attacker does not even cost us a hash.
		const wait = await claimLoginAttempt(keys);
		if (wait > 0) {
			await audit('denied', 'throttled');
			event.setHeaders({ 'retry-after': String(wait) });
			return failWith(429, `Too many failed sign-ins. Try again in ${wait} s.`, { username });
		}

		const result = await authenticate(username, password);
		if (!result.ok) {
			await recordLoginFailure(keys);
			await audit('denied', result.reason);
			const message = result.reason === 'disabled' ? 'This account is disabled.' : 'Wrong username or password.';
			return failWith(401, message, { username });
		}

		await clearLoginFailures(keys);
		const { token, session } = await createSession(result.user.id, {
			ip: clientIp(event),
			userAgent: event.request.headers.get('user-agent')
		});
		setSessionCookie(event.cookies, token, session.expiresAt, event.url.protocol === 'https:');
		await audit('ok', undefined, result.user.id);
		redirect(303, safeNext(event.url.searchParams.get('next')));
	}
};
