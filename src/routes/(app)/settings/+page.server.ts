import { redirect } from '@sveltejs/kit';
import { z } from 'zod';
import { changePasswordSchema, createTokenSchema } from '$lib/schemas/auth';
import { uuidSchema } from '$lib/schemas/common';
import { createApiToken, listApiTokens, revokeApiToken } from '$lib/server/auth/api-tokens';
import { deleteSessionCookie, invalidateUserSessions, listUserSessions } from '$lib/server/auth/session';
import { changeOwnPassword } from '$lib/server/auth/users';
import { actorOf, clientIp, recordAudit } from '$lib/server/audit';
import { claimLoginAttempt, clearLoginFailures, recordLoginFailure, throttleKeys } from '$lib/server/auth/throttle';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { failWith, formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

const SESSIONS_SHOWN = 8;

export const load: PageServerLoad = async (event) => {
	const { user, sessionId } = principalOf(event);
	const [tokens, sessions] = await Promise.all([listApiTokens(user.id), listUserSessions(user.id)]);
	// Newest first; a long tail of old browser sessions is summarised rather than listed.
	return {
		tokens,
		otherSessions: Math.max(0, sessions.length - SESSIONS_SHOWN),
		sessions: sessions.slice(0, SESSIONS_SHOWN).map((s) => ({
			current: s.id === sessionId,
			createdAt: s.createdAt,
			expiresAt: s.expiresAt,
			ip: s.ip,
			userAgent: s.userAgent
		}))
	};
};

// A form sends the expiry as text and the scopes as repeated checkboxes; the JSON endpoint's schema reads both.
const tokenFormShape = (form: FormData) => ({
	name: form.get('name') ?? undefined,
	scopes: form.getAll('scopes'),
	expires_in_days: form.get('expires_in_days') ? Number(form.get('expires_in_days')) : null
});

export const actions: Actions = {
	changePassword: async (event) => {
		const { user, sessionId } = principalOf(event);
		const parsed = await parseForm(event.request, changePasswordSchema);
		if (!parsed.ok) return parsed.failure;
		const audit = (result: 'ok' | 'denied', reason?: string) =>
			recordAudit(actorOf(event), {
				action: 'user.password_change',
				targetType: 'user',
				targetId: user.id,
				result,
				details: reason ? { reason } : {}
			});
		// Guessing the current password from a stolen session is throttled like guessing at sign-in.
		const keys = throttleKeys(clientIp(event) ?? 'unknown', user.username);
		const wait = await claimLoginAttempt(keys);
		if (wait > 0) {
			await audit('denied', 'throttled');
			return failWith(429, `Too many wrong passwords. Try again in ${wait} s.`);
		}
		try {
			await changeOwnPassword(user.id, parsed.data.current_password, parsed.data.new_password, sessionId);
		} catch (err) {
			if (!(err instanceof ServiceError)) throw err;
			await recordLoginFailure(keys);
			await audit('denied', 'invalid_credentials');
			return formError(err, parsed.form);
		}
		await clearLoginFailures(keys);
		await audit('ok');
		return { passwordChanged: true };
	},

	createToken: async (event) => {
		const { user } = principalOf(event);
		const parsed = await parseForm(event.request, createTokenSchema, tokenFormShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const { token, record } = await createApiToken(actorOf(event), user, {
				name: parsed.data.name,
				scopes: parsed.data.scopes,
				expiresInDays: parsed.data.expires_in_days
			});
			return { createdToken: { name: record.name, token } };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	revokeToken: async (event) => {
		const { user } = principalOf(event);
		const parsed = await parseForm(event.request, z.object({ id: uuidSchema }));
		if (!parsed.ok) return parsed.failure;
		if (!(await revokeApiToken(actorOf(event), user.id, parsed.data.id))) {
			return failWith(404, 'No such active token');
		}
		return { revoked: true };
	},

	signOutEverywhere: async (event) => {
		const { user } = principalOf(event);
		const ended = await invalidateUserSessions(user.id);
		await recordAudit(actorOf(event), {
			action: 'auth.logout_everywhere',
			targetType: 'user',
			targetId: user.id,
			details: { sessions: ended }
		});
		deleteSessionCookie(event.cookies, event.url.protocol === 'https:');
		redirect(303, '/login');
	}
};
