import { createHash } from 'node:crypto';
import { expect, test } from './support/test';
import { baseURL, bearer, call, consoleDatabase, cookie, people, postForm, signIn, signInAs } from './support/console';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const db = consoleDatabase();
test.afterAll(() => db.end());

async function countRows(table: 'users' | 'api_tokens'): Promise<number> {
	const [row] = await db`select count(*)::int as n from ${db(table)}`;
	return row!.n;
}

async function createPerson(admin: string, username: string, role: 'viewer' | 'operator' | 'admin') {
	const password = `${username} passphrase!`;
	const res = await call('/api/users', { method: 'POST', headers: cookie(admin), json: { username, password, role } });
	expect(res.status).toBe(201);
	return { ...(await res.json()), password } as { id: string; username: string; password: string };
}

test('sign-in: the right password opens a session, a wrong one does not', async () => {
	const session = await signInAs('viewer');
	const me = await call('/api/me', { headers: cookie(session) });
	expect(await me.json()).toMatchObject({ user: { username: people.viewer.username, role: 'viewer' }, via: 'session' });

	const bad = await postForm('/login', { username: people.viewer.username, password: 'not the password' });
	expect(bad.status).toBe(401);
	expect(bad.headers.getSetCookie().some((c) => c.startsWith('flotilla_session=') && !c.includes('Max-Age=0'))).toBe(
		false
	);
	expect(await bad.text()).toContain('Wrong username or password.');
});

test('the session cookie is HttpOnly, SameSite=Lax and scoped to the whole console', async () => {
	const res = await postForm('/login', people.operator);
	const set = res.headers.getSetCookie().find((c) => c.startsWith('flotilla_session='))!;
	expect(set).toMatch(/HttpOnly/i);
	expect(set).toMatch(/SameSite=Lax/i);
	expect(set).toMatch(/Path=\//);
});

test('repeated failures throttle the username with growing delays, even for the right password', async () => {
	const admin = await signInAs('admin');
	const victim = await createPerson(admin, 'throttled', 'viewer');
	for (let i = 0; i < 6; i++) {
		expect((await postForm('/login', { username: victim.username, password: `guess ${i}` })).status).toBe(401);
	}
	const blocked = await postForm('/login', { username: victim.username, password: victim.password });
	expect(blocked.status).toBe(429);
	expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
	expect(await blocked.text()).toContain('Too many failed sign-ins');

	const audit = await call('/api/audit?action=auth.login&result=denied&actor=throttled', { headers: cookie(admin) });
	const reasons = (await audit.json()).items.map((r: { details: { reason: string } }) => r.details.reason);
	expect(reasons).toContain('throttled');
	expect(reasons.filter((r: string) => r === 'invalid_credentials')).toHaveLength(6);

	// Once the wait is over the right password works again, and the counter starts afresh.
	await new Promise((r) => setTimeout(r, 1100 * Number(blocked.headers.get('retry-after'))));
	await signIn(victim.username, victim.password);
});

test('signing out ends the session on the server, not just in the browser', async () => {
	const session = await signInAs('operator');
	const out = await call('/logout', { method: 'POST', headers: { ...cookie(session), origin: baseURL } });
	expect(out.status).toBe(303);
	expect(out.headers.get('location')).toBe('/login');
	expect((await call('/api/me', { headers: cookie(session) })).status).toBe(401);
});

test('an expired session is refused and the browser is sent to sign in', async () => {
	const session = await signInAs('viewer');
	const token = session.split('=')[1]!;
	const updated =
		await db`update sessions set expires_at = now() - interval '1 second' where id = ${sha256(token)} returning id`;
	expect(updated).toHaveLength(1);
	const page = await call('/', { headers: cookie(session) });
	expect(page.status).toBe(303);
	expect(page.headers.get('location')).toBe('/login');
	expect((await call('/api/me', { headers: cookie(session) })).status).toBe(401);
});

test('disabling a user ends their sessions and tokens at once', async () => {
	const admin = await signInAs('admin');
	const bob = await createPerson(admin, 'bob', 'operator');
	const bobSession = await signIn(bob.username, bob.password);
	const tokenRes = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(bobSession),
		json: { name: 'bob-ci', scopes: ['operate'] }
	});
	const { token } = await tokenRes.json();
	expect((await call('/api/me', { headers: bearer(token) })).status).toBe(200);

	const patch = await call(`/api/users/${bob.id}`, {
		method: 'PATCH',
		headers: cookie(admin),
		json: { disabled: true }
	});
	expect(patch.status).toBe(200);
	expect((await call('/api/me', { headers: cookie(bobSession) })).status).toBe(401);
	expect((await call('/api/me', { headers: bearer(token) })).status).toBe(401);
	const login = await postForm('/login', { username: bob.username, password: bob.password });
	expect(login.status).toBe(401);
	expect(await login.text()).toContain('This account is disabled.');
});

test('a revoked token stops working on its very next request', async () => {
	const session = await signInAs('operator');
	const created = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(session),
		json: { name: 'short-lived', scopes: ['read'] }
	});
	expect(created.status).toBe(201);
	const { id, token } = await created.json();
	expect((await call('/api/version', { headers: bearer(token) })).status).toBe(200);
	expect((await call(`/api/auth/tokens/${id}`, { method: 'DELETE', headers: cookie(session) })).status).toBe(204);
	const after = await call('/api/version', { headers: bearer(token) });
	expect(after.status).toBe(401);
	expect((await after.json()).error.code).toBe('unauthenticated');
});

test('tokens and sessions are stored only as hashes', async () => {
	const session = await signInAs('admin');
	const sessionToken = session.split('=')[1]!;
	const created = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(session),
		json: { name: 'hash-check', scopes: ['read'] }
	});
	const { id, token } = await created.json();

	const sessions = await db`select * from sessions`;
	const apiTokens = await db`select * from api_tokens`;
	const everything = JSON.stringify([sessions, apiTokens]);
	expect(everything).not.toContain(sessionToken);
	expect(everything).not.toContain(token);
	expect(sessions.some((s) => s.id === sha256(sessionToken))).toBe(true);
	expect(apiTokens.find((t) => t.id === id)?.token_hash).toBe(sha256(token));

	const listed = await call('/api/auth/tokens', { headers: cookie(session) });
	expect(JSON.stringify(await listed.json())).not.toContain(token);
});

test('a cross-origin form post is refused and changes nothing', async () => {
	const admin = await signInAs('admin');
	const before = await countRows('api_tokens');
	const res = await postForm(
		'/settings?/createToken',
		{ name: 'csrf', scopes: 'read' },
		{ ...cookie(admin), origin: 'http://evil.example' }
	);
	expect(res.status).toBe(403);
	const after = await countRows('api_tokens');
	expect(after).toBe(before);

	const users = await postForm(
		'/settings/users?/create',
		{ username: 'csrf-user', password: 'x'.repeat(16), role: 'admin' },
		{ ...cookie(admin), origin: 'http://evil.example' }
	);
	expect(users.status).toBe(403);
	expect(await db`select 1 from users where username = 'csrf-user'`).toHaveLength(0);
});

test('a browser session cannot change things through the API from another site; a token can', async () => {
	const admin = await signInAs('admin');
	const { token } = await (
		await call('/api/auth/tokens', {
			method: 'POST',
			headers: cookie(admin),
			json: { name: 'csrf-check', scopes: ['admin'] }
		})
	).json();
	const vera = (await (await call('/api/users', { headers: cookie(admin) })).json()).items.find(
		(u: { username: string }) => u.username === 'vera'
	);
	const evil = { origin: 'http://evil.example' };
	const fromCookie = await call(`/api/users/${vera.id}`, {
		method: 'PATCH',
		headers: { ...cookie(admin), ...evil },
		json: { role: 'admin' }
	});
	expect(fromCookie.status).toBe(403);
	expect((await fromCookie.json()).error.message).toContain('Cross-origin');
	expect((await (await call(`/api/users/${vera.id}`, { headers: cookie(admin) })).json()).role).toBe('viewer');

	const fromToken = await call(`/api/users/${vera.id}`, {
		method: 'PATCH',
		headers: { ...bearer(token), ...evil },
		json: { role: 'viewer' }
	});
	expect(fromToken.status).toBe(200);
});

test("form posts without the console's Origin are refused, sign-in included; a token is never mistaken for a form", async () => {
	const admin = await signInAs('admin');
	const before = await countRows('api_tokens');
	// No Origin at all (an old browser, or a forged post the browser sent without one): refused as well.
	const noOrigin = await fetch(`${baseURL}/settings?/createToken`, {
		method: 'POST',
		redirect: 'manual',
		headers: { ...cookie(admin), 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' },
		body: 'name=csrf&scopes=read'
	});
	expect(noOrigin.status).toBe(403);
	expect(await noOrigin.text()).toBe('Cross-site POST form submissions are forbidden');
	expect(await countRows('api_tokens')).toBe(before);
	// A forged sign-in would put the victim's browser in the attacker's session.
	const login = await postForm('/login', people.viewer, { origin: 'http://evil.example' });
	expect(login.status).toBe(403);
	expect(login.headers.getSetCookie()).toEqual([]);

	// Scripts: a token with a form content type reaches the endpoint, which says what it takes, as JSON.
	const { token } = await (
		await call('/api/auth/tokens', {
			method: 'POST',
			headers: cookie(admin),
			json: { name: 'forms', scopes: ['admin'] }
		})
	).json();
	for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain']) {
		const res = await call('/api/users', {
			method: 'POST',
			headers: { ...bearer(token), 'content-type': type },
			body: 'username=x&password=y&role=admin'
		});
		expect(res.status, type).toBe(415);
		expect((await res.json()).error.code, type).toBe('unsupported_media_type');
	}
	// Without a token or a session there is nothing to forge: the access table answers, as JSON.
	const anonymous = await call('/api/users', {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded' },
		body: 'username=x'
	});
	expect(anonymous.status).toBe(401);
	expect((await anonymous.json()).error.code).toBe('unauthenticated');
	// A browser session's form-typed call from another site is still refused, as JSON.
	const fromSession = await call('/api/users', {
		method: 'POST',
		headers: { ...cookie(admin), origin: 'http://evil.example', 'content-type': 'text/plain' },
		body: '{}'
	});
	expect(fromSession.status).toBe(403);
	expect((await fromSession.json()).error.code).toBe('forbidden');
});

test('a form action that does not exist, or the reserved name default, is a 404, not a 500', async () => {
	const admin = await signInAs('admin');
	for (const [path, headers] of [
		['/login?/default', {}],
		['/login?/nope', {}],
		['/settings?/default', cookie(admin)],
		['/settings?/nope', cookie(admin)],
		['/settings', cookie(admin)]
	] as const) {
		const res = await postForm(path, { username: 'x', password: 'y' }, headers);
		expect(res.status, path).toBe(404);
	}
});

test('a form action sent something that is not a form gets a 4xx, not a 500', async () => {
	const admin = await signInAs('admin');
	const res = await call('/settings/users?/create', {
		method: 'POST',
		headers: { ...cookie(admin), accept: 'text/html', 'content-type': 'text/plain' },
		body: 'username=x'
	});
	expect(res.status).toBe(415);
	const multipart = await call('/settings?/createToken', {
		method: 'POST',
		headers: { ...cookie(admin), accept: 'text/html', 'content-type': 'multipart/form-data' },
		body: 'garbage'
	});
	expect(multipart.status).toBe(415);
});

test('bad input gets a 400 that names the field, and nothing is written', async () => {
	const admin = await signInAs('admin');
	const before = await countRows('users');

	const bad = await call('/api/users', {
		method: 'POST',
		headers: cookie(admin),
		json: { username: 'x y', password: 'short', role: 'root' }
	});
	expect(bad.status).toBe(400);
	const body = await bad.json();
	expect(body.error.code).toBe('validation_failed');
	expect(Object.keys(body.error.fields).sort()).toEqual(['password', 'role', 'username']);

	const notJson = await call('/api/users', {
		method: 'POST',
		headers: { ...cookie(admin), 'content-type': 'application/json' },
		body: '{nope'
	});
	expect(notJson.status).toBe(400);
	expect((await notJson.json()).error.code).toBe('invalid_json');

	const wrongType = await call('/api/users', {
		method: 'POST',
		headers: { ...cookie(admin), 'content-type': 'application/yaml' },
		body: 'a: 1'
	});
	expect(wrongType.status).toBe(415);

	const badId = await call('/api/users/not-a-uuid', { headers: cookie(admin) });
	expect(badId.status).toBe(400);
	expect((await badId.json()).error.message).toContain('UUID');

	const farFuture = await call('/api/audit?since=%2B200000-01-01', { headers: cookie(admin) });
	expect(farFuture.status).toBe(400);
	expect((await farFuture.json()).error.fields.since).toContain('between years');

	const badQuery = await call('/api/audit?limit=100000', { headers: cookie(admin) });
	expect(badQuery.status).toBe(400);
	expect((await badQuery.json()).error.fields).toHaveProperty('limit');

	const badToken = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: '', scopes: ['everything'] }
	});
	expect(badToken.status).toBe(400);
	expect(Object.keys((await badToken.json()).error.fields)).toEqual(expect.arrayContaining(['name', 'scopes.0']));

	const after = await countRows('users');
	expect(after).toBe(before);
});

test('a change beyond the caller role is refused and audited as denied', async () => {
	const viewer = await signInAs('viewer');
	const res = await call('/api/users', {
		method: 'POST',
		headers: cookie(viewer),
		json: { username: 'sneaky', password: 'x'.repeat(16), role: 'admin' }
	});
	expect(res.status).toBe(403);
	const admin = await signInAs('admin');
	const audit = await (await call('/api/audit?action=access.denied&actor=vera', { headers: cookie(admin) })).json();
	expect(audit.items[0]).toMatchObject({ target_id: 'POST /api/users', result: 'denied', via: 'session' });
});

test('an operator cannot mint an admin token', async () => {
	const session = await signInAs('operator');
	const res = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(session),
		json: { name: 'escalate', scopes: ['admin'] }
	});
	expect(res.status).toBe(403);
	expect((await res.json()).error.fields.scopes).toContain('admin');
});

test('the last admin cannot be demoted', async () => {
	const admin = await signInAs('admin');
	const me = await (await call('/api/me', { headers: cookie(admin) })).json();
	const res = await call(`/api/users/${me.user.id}`, {
		method: 'PATCH',
		headers: cookie(admin),
		json: { role: 'viewer' }
	});
	expect(res.status).toBe(409);
	expect((await res.json()).error.code).toBe('conflict');
});

test('unknown API paths and methods answer JSON, not HTML', async () => {
	const admin = await signInAs('admin');
	const missing = await call('/api/no/such/thing', { headers: cookie(admin) });
	expect(missing.status).toBe(404);
	expect((await missing.json()).error.code).toBe('not_found');
	const method = await call('/api/audit', { method: 'DELETE', headers: cookie(admin) });
	expect(method.status).toBe(405);
	expect(method.headers.get('allow')).toBe('GET');
	expect((await method.json()).error.code).toBe('method_not_allowed');
});

test('health and version', async () => {
	const health = await call('/healthz');
	expect(health.status).toBe(200);
	expect(await health.json()).toEqual({ ok: true });
	const { token } = await (
		await call('/api/auth/tokens', {
			method: 'POST',
			headers: cookie(await signInAs('viewer')),
			json: { name: 'v', scopes: ['read'] }
		})
	).json();
	const version = await (await call('/api/version', { headers: bearer(token) })).json();
	expect(version).toMatchObject({ name: 'flotilla', database: 'postgres' });
	expect(version.version).toMatch(/^\d+\.\d+\.\d+/);
});

test('every mutation above is in the audit log with who, what, target and where from', async () => {
	const admin = await signInAs('admin');
	const res = await call('/api/audit?limit=500', { headers: cookie(admin) });
	const { items } = await res.json();
	const actions = new Set(items.map((r: { action: string }) => r.action));
	for (const a of [
		'setup.first_admin',
		'user.create',
		'user.update',
		'token.create',
		'token.revoke',
		'auth.login',
		'auth.logout'
	]) {
		expect(actions, a).toContain(a);
	}
	const disable = items.find(
		(r: { action: string; details: { disabled?: boolean } }) => r.action === 'user.update' && r.details.disabled
	);
	expect(disable).toMatchObject({ actor: 'admin', via: 'session', target_type: 'user', result: 'ok' });
	expect(disable.source_ip).toMatch(/127\.0\.0\.1/);
});
