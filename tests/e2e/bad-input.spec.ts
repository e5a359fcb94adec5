import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { bearer, call, consoleDatabase, cookie, loadTokens, postForm, signInAs } from './support/console';

/**
 * Inputs a hostile client sent that once answered 500: NUL characters reaching PostgreSQL, a YAML alias bomb,
 * prototype keys as record keys and action names. Each is now a 4xx naming the field, in the documented
 * shape, and writes nothing.
 */

const run = promisify(execFile);
const db = consoleDatabase();
test.afterAll(() => db.end());

const count = async (table: 'api_tokens' | 'code_roles' | 'code_commits' | 'runs' | 'nodes') =>
	(await db`select count(*)::int as n from ${db(table)}`)[0]!.n as number;

const fieldsOf = async (res: Response) => {
	const body = await res.json();
	expect(body.error.code).toBe('validation_failed');
	return body.error.fields as Record<string, string>;
};

test('a NUL character in a body, a form or a query string is a 400 naming the field, and nothing is written', async () => {
	const admin = await signInAs('admin');
	const tokens = loadTokens();
	const before = {
		tokens: await count('api_tokens'),
		roles: await count('code_roles'),
		commits: await count('code_commits')
	};

	const token = await call('/api/auth/tokens', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: 'a\u0000b', scopes: ['read'] }
	});
	expect(token.status).toBe(400);
	expect(await fieldsOf(token)).toHaveProperty(['name']);

	const role = await call('/api/roles', {
		method: 'POST',
		headers: bearer(tokens.admin),
		json: { name: 'nul-role', path: '/srv/nul', units: ['nul.service'], description: 'a\u0000b' }
	});
	expect(role.status).toBe(400);
	expect(await fieldsOf(role)).toHaveProperty(['description']);

	const notify = await call('/api/code-source/notify', {
		method: 'POST',
		headers: bearer(tokens.operate),
		json: { commit: 'abcdef1', changed_roles: ['nul-role'], message: 'a\u0000b' }
	});
	expect(notify.status).toBe(400);
	expect(await fieldsOf(notify)).toHaveProperty(['message']);

	for (const query of ['q=%00', 'q=a%00b', 'cursor=%00', 'label=a=%00']) {
		const res = await call(`/api/nodes?${query}`, { headers: bearer(tokens.read) });
		expect(res.status, query).toBe(400);
		expect(await fieldsOf(res), query).toHaveProperty([query.split('=')[0]!]);
	}
	for (const query of ['actor=%00', 'action=%00']) {
		const res = await call(`/api/audit?${query}`, { headers: bearer(tokens.admin) });
		expect(res.status, query).toBe(400);
	}
	for (const page of ['/?q=%00', '/audit?actor=%00', '/code-sync?cursor=%00']) {
		const res = await call(page, { headers: cookie(admin) });
		expect(res.status, page).toBe(400);
	}
	const login = await postForm('/login', { username: 'a\u0000b', password: 'whatever it is' });
	expect(login.status).toBe(400);

	expect(await count('api_tokens')).toBe(before.tokens);
	expect(await count('code_roles')).toBe(before.roles);
	expect(await count('code_commits')).toBe(before.commits);
});

test('a prototype key is refused as a name: in a record, in a form field, as a form action', async () => {
	const admin = await signInAs('admin');
	const tokens = loadTokens();
	const runs = await count('runs');
	const trigger = await call('/api/updates/trigger', {
		method: 'POST',
		headers: bearer(tokens.operate),
		json: { expect: { constructor: 'abcdef1' } }
	});
	expect(trigger.status).toBe(400);
	expect(await fieldsOf(trigger)).toHaveProperty(['expect.constructor']);

	const proto = await call('/api/updates/trigger', {
		method: 'POST',
		headers: { ...bearer(tokens.operate), 'content-type': 'application/json' },
		body: '{"dry_run": true, "scope": {"__proto__": {"roles": ["x"]}}}'
	});
	expect(proto.status).toBe(400);
	expect(await fieldsOf(proto)).toHaveProperty(['scope.__proto__']);

	// The Fleet Overview's update form carries the plan's commits as JSON.
	const form = await postForm('/?/update', { expect: '{"constructor":"abcdef1"}' }, cookie(admin));
	expect(form.status).toBe(400);
	expect(await count('runs')).toBe(runs);

	for (const action of ['__proto__', 'constructor', 'toString']) {
		const res = await postForm(`/settings?/${action}`, {}, cookie(admin));
		expect(res.status, action).toBe(404);
	}
});

test('a lone surrogate, or a prototype key as a query name or a whole body key, is a 400, not a 500', async () => {
	const admin = await signInAs('admin');
	const tokens = loadTokens();
	const roles = await count('code_roles');
	// JSON can spell half a surrogate pair; jsonb (the audit row's details) refused it as a 500.
	const surrogate = await call('/api/roles', {
		method: 'POST',
		headers: { ...bearer(tokens.admin), 'content-type': 'application/json' },
		body: '{"name": "surrogate-role", "path": "/srv/s", "units": ["s.service"], "description": "a\\ud800b"}'
	});
	expect(surrogate.status).toBe(400);
	expect(await fieldsOf(surrogate)).toHaveProperty(['description']);
	expect(await count('code_roles')).toBe(roles);

	// A bare __proto__ key once vanished from the list of problems, and the body went on to the schema.
	const bare = await call('/api/updates/trigger', {
		method: 'POST',
		headers: { ...bearer(tokens.operate), 'content-type': 'application/json' },
		body: '{"dry_run": true, "__proto__": {"x": 1}}'
	});
	expect(bare.status).toBe(400);
	expect((await bare.json()).error.message).toContain('__proto__ is not allowed as a name');

	// The audit page handed an own __proto__ to the page's serialiser: a 500.
	const page = await call('/audit?__proto__=x', { headers: cookie(admin) });
	expect(page.status).toBe(400);
	const api = await call('/api/nodes?constructor=x', { headers: bearer(tokens.read) });
	expect(api.status).toBe(400);
	expect(await fieldsOf(api)).toHaveProperty(['constructor']);
});

test('a YAML alias bomb as an inventory is refused with the reason, as a plan error', async () => {
	const tokens = loadTokens();
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-bomb-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const created = await call('/api/credentials', {
		method: 'POST',
		headers: bearer(tokens.admin),
		json: { name: `bomb-${Date.now()}`, private_key: await readFile(join(dir, 'key'), 'utf8') }
	});
	await rm(dir, { recursive: true, force: true });
	expect(created.status).toBe(201);
	const credential = (await created.json()).id as string;
	const names = 'abcdefghi';
	const lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
	for (let i = 1; i < names.length; i++) {
		lines.push(
			`${names[i]}: &${names[i]} [${Array(9)
				.fill(`*${names[i - 1]}`)
				.join(',')}]`
		);
	}
	lines.push('all:', '  hosts:', '    h1:', '      x: *i');
	const nodes = await count('nodes');
	const res = await call(`/api/inventory/import?credential_id=${credential}&dry_run=1`, {
		method: 'POST',
		headers: { ...bearer(tokens.admin), 'content-type': 'application/yaml' },
		body: lines.join('\n')
	});
	expect(res.status).toBe(400);
	const body = await res.json();
	expect(JSON.stringify(body)).toMatch(/Excessive alias count/);
	expect(await count('nodes')).toBe(nodes);
	await call(`/api/credentials/${credential}`, { method: 'DELETE', headers: bearer(tokens.admin) });
});

test('an oversized body, URL or sign-in name is answered with the limit, not dropped or misnamed', async () => {
	const tokens = loadTokens();
	const roles = await count('code_roles');
	const tooLarge = async (res: Response) => {
		expect(res.status).toBe(413);
		const body = await res.json();
		expect(body.error).toMatchObject({ code: 'payload_too_large', fields: { body: 'is larger than 524288 bytes' } });
	};
	const big = { name: 'big-role', path: '/srv/big', units: ['big.service'], description: 'x'.repeat(1024 * 1024) };
	await tooLarge(await call('/api/roles', { method: 'POST', headers: bearer(tokens.admin), json: big }));

	// Without a Content-Length the limit is met part-way through the upload, and still answered.
	const text = JSON.stringify(big);
	const chunks = [text.slice(0, 300_000), text.slice(300_000, 600_000), text.slice(600_000)];
	const stream = new ReadableStream<Uint8Array>({
		pull(controller) {
			const next = chunks.shift();
			if (next === undefined) controller.close();
			else controller.enqueue(new TextEncoder().encode(next));
		}
	});
	const chunked = await call('/api/roles', {
		method: 'POST',
		headers: { ...bearer(tokens.admin), 'content-type': 'application/json' },
		body: stream,
		duplex: 'half'
	} as RequestInit);
	await tooLarge(chunked);
	expect(await count('code_roles')).toBe(roles);

	const form = await postForm('/login', { username: 'admin', password: 'x'.repeat(1024 * 1024) });
	expect(form.status).toBe(413);
	expect(await form.text()).toContain('at most 524288 bytes');

	const long = 'a'.repeat(70_000);
	const api = await call(`/api/nodes?q=${long}`, { headers: bearer(tokens.read) });
	expect(api.status).toBe(414);
	expect((await api.json()).error).toMatchObject({
		code: 'uri_too_long',
		fields: { url: 'is longer than 8192 bytes' }
	});
	const page = await call(`/?q=${long}`, { headers: bearer(tokens.read) });
	expect(page.status).toBe(414);

	const name = await postForm('/login', { username: 'a'.repeat(65), password: 'whatever it is' });
	expect(name.status).toBe(400);
	expect(await name.text()).toContain('username: must be at most 64 characters');
});
