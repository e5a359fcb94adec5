import { error, json, redirect, text, type Handle, type HandleServerError, type ServerInit } from '@sveltejs/kit';
import { sequence } from '@sveltejs/kit/hooks';
import { actorOf, recordAudit } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { authenticateApiToken } from '$lib/server/auth/api-tokens';
import { roleLevel } from '$lib/server/auth/levels';
import { SESSION_COOKIE, deleteSessionCookie, setSessionCookie, validateSessionToken } from '$lib/server/auth/session';
import { describeFieldErrors } from '$lib/schemas/errors';
import { errorResponse } from '$lib/server/http/api';
import { entryProblems } from '$lib/server/http/input';
import { MAX_URL_BYTES, urlTooLong } from '$lib/server/http/limits';
import { ServiceError } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { startConsole } from '$lib/server/startup';

export const init: ServerInit = async () => {
	await startConsole();
};

const isApiPath = (path: string) => path === '/api' || path.startsWith('/api/') || path === '/metrics';

/**
 * An over-long URL, or a query string with a NUL character or a prototype key as a parameter, is refused before
 * anything reads it: every page and endpoint filters by query parameters, and PostgreSQL's text refuses NULs.
 */
const refuseBadQuery: Handle = async ({ event, resolve }) => {
	const refusal = requestTargetRefusal(event.url);
	if (!refusal) return resolve(event);
	if (isApiPath(event.url.pathname)) {
		return errorResponse(refusal.status, refusal.code, refusal.message, refusal.fields);
	}
	error(refusal.status, refusal.message);
};

function requestTargetRefusal(url: URL): ServiceError | null {
	const length = Buffer.byteLength(url.pathname + url.search);
	if (length > MAX_URL_BYTES) return urlTooLong(length);
	const problems = entryProblems(url.searchParams);
	if (!Object.keys(problems).length) return null;
	return new ServiceError('validation_failed', describeFieldErrors(problems), problems);
}

/**
 * Release scripts written for the older control plane send an admin API token in `x-cp-admin-token` instead of
 * `Authorization: Bearer`; it is read on those paths only (releases and rollouts), and only an admin's token.
 */
const SEED_ADMIN_HEADER = 'x-cp-admin-token';
const takesSeedAdminToken = (path: string) => /^\/api\/(releases|rollouts)(\/|$)/.test(path);

/** Resolves the session cookie or, on API paths, the bearer token into `locals.principal`. */
const authenticate: Handle = async ({ event, resolve }) => {
	event.locals.principal = null;
	const api = isApiPath(event.url.pathname);
	const secure = event.url.protocol === 'https:';

	const bearer = api ? event.request.headers.get('authorization') : null;
	const seedToken =
		!bearer && takesSeedAdminToken(event.url.pathname) ? event.request.headers.get(SEED_ADMIN_HEADER) : null;
	if (bearer || seedToken) {
		const token = bearer ? /^Bearer\s+(\S+)\s*$/i.exec(bearer)?.[1] : seedToken!.trim();
		const found = token ? await authenticateApiToken(token) : null;
		// The header is named for an admin's token: a lesser one sent in it is refused as if unknown, not
		// quietly allowed what its own level allows.
		const principal = seedToken && found?.level !== 'admin' ? null : found;
		if (!principal) {
			return errorResponse(
				401,
				'unauthenticated',
				'The API token is invalid, expired or revoked',
				{},
				{
					'www-authenticate': 'Bearer'
				}
			);
		}
		event.locals.principal = principal;
		return resolve(event);
	}

	// Cross-site request forgery rides on the browser's ambient credential, the session cookie, so only requests
	// without a token are checked (SvelteKit's own check, turned off in svelte.config.js, could not tell a
	// script's token from a browser's form). Browsers send Origin with every POST, PUT, PATCH and DELETE.
	const mutating = !['GET', 'HEAD', 'OPTIONS'].includes(event.request.method);
	if (mutating && event.request.headers.get('origin') !== event.url.origin) {
		// The API: a change in a browser session comes only from the console's own pages. Without a cookie there
		// is nothing to forge; the access table answers 401.
		if (api && event.cookies.get(SESSION_COOKIE)) {
			return errorResponse(
				403,
				'forbidden',
				'Cross-origin request refused: send an API token, or use the console itself'
			);
		}
		// Pages: every form post, signed in or not (a forged sign-in would plant the attacker's session).
		if (!api) return crossSiteFormRefusal(event.request);
	}

	const sessionToken = event.cookies.get(SESSION_COOKIE);
	if (sessionToken) {
		const valid = await validateSessionToken(sessionToken);
		if (valid) {
			event.locals.principal = {
				via: 'session',
				user: valid.user,
				level: roleLevel[valid.user.role],
				sessionId: valid.session.id
			};
			// Re-send the cookie so the browser's expiry slides along with the session's.
			setSessionCookie(event.cookies, sessionToken, valid.session.expiresAt, secure);
		} else {
			deleteSessionCookie(event.cookies, secure);
		}
	}
	return resolve(event);
};

/** SvelteKit's own answer to a cross-site form post, which browsers and its client script understand. */
function crossSiteFormRefusal(request: Request): Response {
	const message = `Cross-site ${request.method} form submissions are forbidden`;
	return request.headers.get('accept') === 'application/json'
		? json({ message }, { status: 403 })
		: text(message, { status: 403 });
}

/** Enforces the access table (src/lib/server/auth/access.ts) for every request. */
const authorizeRequest: Handle = async ({ event, resolve }) => {
	const api = isApiPath(event.url.pathname);
	const routeId = event.route.id;
	if (!routeId) {
		return api ? errorResponse(404, 'not_found', `No such endpoint: ${event.url.pathname}`) : resolve(event);
	}
	const decision = authorize(routeId, event.request.method, event.url.search, event.locals.principal);
	if (decision.allow) return resolve(event);

	if (decision.status === 403 && decision.message.startsWith('No access rule')) {
		log.error({ routeId }, 'route without an access rule refused; add it to accessPolicy');
	}
	// A signed-in user or token reaching for a change beyond its role is worth an operator's attention.
	if (decision.status === 403 && !['GET', 'HEAD'].includes(event.request.method)) {
		await recordAudit(actorOf(event), {
			action: 'access.denied',
			targetType: 'route',
			targetId: `${event.request.method} ${event.url.pathname}${event.url.search}`,
			result: 'denied',
			details: { reason: decision.message }
		});
	}
	if (api) {
		const code = ({ 401: 'unauthenticated', 403: 'forbidden', 404: 'not_found', 405: 'method_not_allowed' } as const)[
			decision.status
		];
		const headers: Record<string, string> = decision.allowed ? { allow: decision.allowed.join(', ') } : {};
		if (decision.status === 401) headers['www-authenticate'] = 'Bearer';
		return errorResponse(decision.status, code, decision.message, {}, headers);
	}
	if (decision.status === 401) {
		const next = event.url.pathname + event.url.search;
		redirect(303, next === '/' ? '/login' : `/login?next=${encodeURIComponent(next)}`);
	}
	error(decision.status, decision.message);
};

/** Headers every answer carries; the content security policy itself is in svelte.config.js. */
const securityHeaders: Handle = async ({ event, resolve }) => {
	const theme = event.cookies.get('flotilla_theme');
	const response = await resolve(event, {
		transformPageChunk: ({ html }) =>
			html.replace('%flotilla.theme%', theme === 'dark' || theme === 'light' ? theme : '')
	});
	response.headers.set('x-content-type-options', 'nosniff');
	response.headers.set('referrer-policy', 'same-origin');
	if (!response.headers.has('cache-control') && isApiPath(event.url.pathname)) {
		response.headers.set('cache-control', 'no-store');
	}
	return response;
};

/**
 * A request refused before its body was read (a 404, 401 or 400 from its URL) leaves that body unread on the
 * connection; it is read to the end and dropped after the answer, so that the client's next request on the same
 * kept-alive connection is not stuck behind it.
 */
const drainUnreadBody: Handle = async ({ event, resolve }) => {
	const response = await resolve(event);
	const { body, bodyUsed } = event.request;
	if (body && !bodyUsed) void body.pipeTo(new WritableStream()).catch(() => {});
	return response;
};

export const handle = sequence(drainUnreadBody, securityHeaders, refuseBadQuery, authenticate, authorizeRequest);

export const handleError: HandleServerError = ({ error: err, event, status, message }) => {
	// A client's mistake that SvelteKit answers itself (a form action sent as JSON: 415; a path that is not UTF-8:
	// 400) is not the console's error, and must not fill its error log when someone probes it.
	if (status >= 500) log.error({ err: loggableError(err), path: event.url.pathname, status }, 'unhandled error');
	return { message: status === 500 ? 'Something went wrong on the console; the error is in its log.' : message };
};
