import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020.js';
import { expect, test } from './support/test';
import { hmacHex, requestText } from '../../src/lib/server/agents/signing.ts';
import { hmacSignature } from '../../src/lib/server/releases/signing.ts';
import { bearer, call, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * The OpenAPI document against the running console: what it says an endpoint accepts and answers is what the
 * endpoint does. Everything here is driven by the document (no list of fields of its own), so an endpoint whose
 * schema changes without the document (or the other way round) fails here:
 * - each documented body field, sent with a value its documented type excludes, is refused with a 400 naming it;
 * - each documented required field, left out, is named in the 400;
 * - a body with an undocumented field is refused where the document says no other fields are allowed;
 * - each documented example is accepted (anything but a 400);
 * - real answers of GET endpoints validate against their documented response schemas, and so do those of the
 *   POST, PUT and PATCH endpoints this spec can drive without a reachable node.
 */

type JsonSchema = Record<string, unknown> & {
	properties?: Record<string, JsonSchema>;
	required?: string[];
	additionalProperties?: unknown;
};
interface Op {
	summary: string;
	'x-flotilla-access': { level: string; session_only: boolean };
	parameters?: { name: string; in: string }[];
	requestBody?: { content: Record<string, { schema: JsonSchema; example?: unknown }> };
	responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }>;
}
type Doc = { paths: Record<string, Record<string, Op>> };

function ajv() {
	const a = new Ajv2020({ strict: false, allErrors: true });
	a.addFormat('uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i);
	a.addFormat('date-time', (s: string) => !Number.isNaN(Date.parse(s)) && /^\d{4}-\d\d-\d\dT/.test(s));
	for (const f of ['email', 'uri', 'hostname', 'ipv4', 'ipv6', 'date', 'time', 'duration', 'base64'])
		a.addFormat(f, true);
	return a;
}

const run = promisify(execFile);
let doc: Doc;
let auth: { token: Record<string, string>; session: string };

test.beforeAll(async () => {
	const tokens = loadTokens();
	auth = { token: bearer(tokens.admin), session: await signInAs('admin') };
	const res = await call('/api/openapi.json', { headers: bearer(tokens.read) });
	expect(res.status).toBe(200);
	doc = await res.json();
});

const headersFor = (op: Op) => (op['x-flotilla-access'].session_only ? cookie(auth.session) : auth.token);

/** A node's pull agent, enrolled for the agent's own endpoints (signed by it, not by a user). */
let agent: { node: string; secret: string } | undefined;
async function enrolledAgent() {
	if (!agent) {
		const node = (await seedFleet()).nodeId;
		const res = await call(`/api/nodes/${node}/agent`, { method: 'POST', headers: auth.token });
		expect(res.status).toBe(201);
		agent = { node, secret: (await res.json()).secret };
	}
	return agent;
}

/** Sends `json` as `op` expects its caller: an agent's operations signed by the enrolled agent, others by a user. */
async function send(path: string, method: string, op: Op, json: unknown) {
	if (op['x-flotilla-access'].level !== 'agent') return call(path, { method, headers: headersFor(op), json });
	const { node, secret } = await enrolledAgent();
	const body = JSON.stringify(json);
	const timestamp = String(Math.floor(Date.now() / 1000));
	const nonce = crypto.randomUUID().replaceAll('-', '');
	const signature = hmacHex(secret, requestText({ method, path, timestamp, nonce, body }));
	return call(path, {
		method,
		body,
		headers: {
			'content-type': 'application/json',
			'x-flotilla-node': node,
			'x-flotilla-timestamp': timestamp,
			'x-flotilla-nonce': nonce,
			'x-flotilla-signature': signature
		}
	});
}

/** A path with its parameters filled by values that pass their own checks but name nothing that exists. */
const concrete = (path: string) =>
	path.replace(/\{(\w+)\}/g, (_, name: string) => (name === 'name' ? 'openapi-probe' : crypto.randomUUID()));

const bodyOperations = () =>
	Object.entries(doc.paths).flatMap(([path, item]) =>
		Object.entries(item).flatMap(([method, op]) => {
			const json = op.requestBody?.content['application/json'];
			return json ? [{ path, method: method.toUpperCase(), op, schema: json.schema, example: json.example }] : [];
		})
	);

/** The first of a few JSON values the documented schema refuses. */
function wrongValueFor(schema: JsonSchema, validator: Ajv2020): unknown {
	const check = validator.compile(schema);
	return [true, 12345, 'not-a-valid-value', [], {}, null].find((v) => !check(v));
}

test('each documented body field, sent with a value of a type the document excludes, is refused naming it', async () => {
	const validator = ajv();
	let checked = 0;
	const mismatches: string[] = [];
	for (const { path, method, op, schema } of bodyOperations()) {
		for (const [field, fieldSchema] of Object.entries(schema.properties ?? {})) {
			const wrong = wrongValueFor(fieldSchema, validator);
			if (wrong === undefined) continue;
			const res = await send(concrete(path), method, op, { [field]: wrong });
			const body = await res.json().catch(() => null);
			const fields = Object.keys(body?.error?.fields ?? {});
			if (res.status !== 400 || !fields.some((f) => f === field || f.startsWith(`${field}.`))) {
				mismatches.push(
					`${method} ${path} ${field}=${JSON.stringify(wrong)} → ${res.status} ${JSON.stringify(fields)}`
				);
			}
			checked++;
		}
	}
	expect(mismatches).toEqual([]);
	expect(checked).toBeGreaterThan(100);
});

test('each documented required field, left out, is named in the 400; undocumented fields are refused where the document says so', async () => {
	let checked = 0;
	const mismatches: string[] = [];
	for (const { path, method, op, schema } of bodyOperations()) {
		if (!schema.properties) continue;
		const res = await send(
			concrete(path),
			method,
			op,
			schema.additionalProperties === false ? { zz_not_documented: 1 } : {}
		);
		const body = await res.json().catch(() => null);
		const fields: Record<string, string> = body?.error?.fields ?? {};
		const missing = (schema.required ?? []).filter(
			(f) => !Object.keys(fields).some((k) => k === f || k.startsWith(`${f}.`))
		);
		const refusedExtra = schema.additionalProperties !== false || JSON.stringify(fields).includes('zz_not_documented');
		const expectRefusal = (schema.required ?? []).length > 0 || schema.additionalProperties === false;
		if ((expectRefusal && res.status !== 400) || missing.length || !refusedExtra) {
			mismatches.push(
				`${method} ${path} → ${res.status} fields ${JSON.stringify(fields)}; required not named: ${missing}`
			);
		}
		checked++;
	}
	expect(mismatches).toEqual([]);
	expect(checked).toBeGreaterThan(30);
});

test('each documented example body matches its schema and is accepted', async () => {
	const validator = ajv();
	const examples = bodyOperations().filter((o) => o.example !== undefined);
	expect(examples.length).toBeGreaterThan(0);
	for (const { path, method, op, schema, example } of examples) {
		expect(validator.validate(schema, example), `${method} ${path}: ${validator.errorsText()}`).toBe(true);
		const res = await send(concrete(path), method, op, example);
		expect(res.status, `${method} ${path}: ${await res.clone().text()}`).not.toBe(400);
		expect(res.status).toBeLessThan(500);
	}
});

/** A credential, a node (on an address of this spec's testbed range where nothing listens) and a check run of it, whose id it answers. */
async function seedFleet() {
	const dir = await mkdtemp(join(tmpdir(), 'openapi-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const privateKey = await readFile(join(dir, 'key'), 'utf8');
	await rm(dir, { recursive: true });
	const suffix = crypto.randomUUID().slice(0, 8);
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: auth.token, json });
	const cred = await post('/api/credentials', { name: `openapi-${suffix}`, private_key: privateKey });
	expect(cred.status).toBe(201);
	const node = await post('/api/nodes', {
		name: `openapi-${suffix}`,
		host: '127.0.1.60',
		port: 1,
		credential_id: (await cred.json()).id,
		labels: { spec: 'openapi' }
	});
	expect(node.status).toBe(201);
	const nodeId: string = (await node.json()).id;
	const check = await post('/api/runs', { kind: 'check', nodes: [nodeId] });
	expect(check.status).toBe(202);
	return { runId: (await check.json()).run_id as string, nodeId };
}

test('real answers of GET endpoints validate against their documented response schemas', async () => {
	await seedFleet();
	// A node's agent answers once it is enrolled: the first node's is, for this look, and revoked after it.
	const firstNode: string = (await (await call('/api/nodes', { headers: auth.token })).json()).items[0].id;
	const enrolled = await call(`/api/nodes/${firstNode}/agent`, { method: 'POST', headers: auth.token });
	expect(enrolled.status).toBe(201);
	try {
		await checkGetAnswers({ node: firstNode, secret: (await enrolled.json()).secret });
	} finally {
		await call(`/api/nodes/${firstNode}/agent`, { method: 'DELETE', headers: auth.token });
	}
});

/** The signature headers of an agent's GET (no body) as `agent` sends them. */
function signedGet(path: string, agent: { node: string; secret: string }) {
	const timestamp = String(Math.floor(Date.now() / 1000));
	const nonce = crypto.randomUUID().replaceAll('-', '');
	return {
		'x-flotilla-node': agent.node,
		'x-flotilla-timestamp': timestamp,
		'x-flotilla-nonce': nonce,
		'x-flotilla-signature': hmacHex(agent.secret, requestText({ method: 'GET', path, timestamp, nonce, body: '' }))
	};
}

async function checkGetAnswers(agent: { node: string; secret: string }) {
	const validator = ajv();
	const compiled = new Map<string, ValidateFunction>();
	const checked: string[] = [];
	const mismatches: string[] = [];
	for (const [path, item] of Object.entries(doc.paths)) {
		const op = item.get;
		const schema = op?.responses['200']?.content?.['application/json']?.schema;
		if (!op || !schema || Object.keys(schema).length <= 1) continue;
		let url = path;
		if (path.includes('{')) {
			// One of a kind: the first item of the list it belongs to, when the list has one.
			const list = await call(path.replace(/\/\{\w+\}.*$/, ''), { headers: headersFor(op) });
			const first = list.ok ? (await list.json()).items?.[0] : undefined;
			if (!first?.id || (path.match(/\{/g) ?? []).length > 1) continue;
			url = path.replace(/\{\w+\}/, first.id);
		}
		// An agent's GET (an appliance's check-in) is signed by the enrolled node's agent, not a user.
		const headers = op['x-flotilla-access'].level === 'agent' ? signedGet(url, agent) : headersFor(op);
		const res = await call(url, { headers });
		expect(res.status, url).toBe(200);
		const validate = compiled.get(path) ?? validator.compile(schema);
		compiled.set(path, validate);
		if (!validate(await res.json())) mismatches.push(`GET ${url}: ${validator.errorsText(validate.errors)}`);
		checked.push(path);
	}
	expect(mismatches).toEqual([]);
	// The one-of-a-kind paths are only reached through a list with an item in it: these lists were not empty.
	expect(checked).toEqual(
		expect.arrayContaining([
			'/api/version',
			'/api/me',
			'/api/nodes/{id}',
			'/api/nodes/{id}/agent',
			'/api/appliances/checkin',
			'/api/runs/{id}',
			'/api/users/{id}'
		])
	);
}

/** The release signing secret the e2e console is started with (playwright.config.ts). */
const RELEASE_SECRET = 'e2e-release-signing-secret-0123';

test('real answers of POST, PUT and PATCH endpoints validate against their documented response schemas', async () => {
	const validator = ajv();
	const mismatches: string[] = [];
	const checked = new Set<string>();
	/** Calls a documented operation, expects `status` and checks the answer against that status's schema. */
	const drive = async (
		method: string,
		path: string,
		status: number,
		init: { url?: string; json?: unknown; body?: string; type?: string } = {}
	) => {
		const op = doc.paths[path]?.[method.toLowerCase()];
		if (!op) throw new Error(`${method} ${path} is not in the document`);
		const headers: Record<string, string> = { ...headersFor(op), ...(init.type ? { 'content-type': init.type } : {}) };
		const res = await call(init.url ?? path, { method, headers, json: init.json, body: init.body });
		const text = await res.text();
		const schema = op.responses[String(status)]?.content?.['application/json']?.schema;
		if (res.status !== status || !schema) {
			mismatches.push(`${method} ${init.url ?? path} → ${res.status} (expected ${status}): ${text.slice(0, 300)}`);
			return JSON.parse(text || 'null');
		}
		const body = JSON.parse(text);
		const validate = validator.compile(schema);
		if (!validate(body)) mismatches.push(`${method} ${path} ${status}: ${validator.errorsText(validate.errors)}`);
		checked.add(`${method} ${path}`);
		return body;
	};

	const suffix = crypto.randomUUID().slice(0, 8);
	const commit = (n: number) => createHash('sha1').update(`${suffix}-${n}`).digest('hex');
	const dir = await mkdtemp(join(tmpdir(), 'openapi-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const privateKey = await readFile(join(dir, 'key'), 'utf8');
	await rm(dir, { recursive: true });
	const cleanup: [string, string][] = [];
	try {
		const cred = await drive('POST', '/api/credentials', 201, {
			json: { name: `openapi-w-${suffix}`, private_key: privateKey }
		});
		const role = `oa-${suffix}`;
		await drive('POST', '/api/roles', 201, { json: { name: role, path: `/srv/${role}`, units: [`${role}.service`] } });
		cleanup.push(['/api/roles/{name}', `/api/roles/${role}`]);
		const node = await drive('POST', '/api/nodes', 201, {
			// An address of this spec's range where nothing listens: checks fail fast, nothing is changed on a host.
			json: { name: `openapi-w-${suffix}`, host: '127.0.1.60', port: 1, credential_id: cred.id, roles: [role] }
		});
		cleanup.unshift(['/api/nodes/{id}', `/api/nodes/${node.id}`]);
		cleanup.push(['/api/credentials/{id}', `/api/credentials/${cred.id}`]);
		const nodeUrl = `/api/nodes/${node.id}`;
		await drive('PATCH', '/api/nodes/{id}', 200, { url: nodeUrl, json: { labels: { spec: 'openapi' } } });
		await drive('POST', '/api/nodes/{id}/check', 200, { url: `${nodeUrl}/check` });
		await drive('POST', '/api/runs', 202, { json: { kind: 'check', nodes: [node.id] } });

		await drive('PATCH', '/api/roles/{name}', 200, {
			url: `/api/roles/${role}`,
			json: { description: 'openapi spec' }
		});
		await drive('PUT', '/api/roles/{name}/provisioning', 200, {
			url: `/api/roles/${role}/provisioning`,
			json: { packages: ['curl'], env_template: 'MODE=spec\n' }
		});
		await drive('POST', '/api/code-source/notify', 200, { json: { commit: commit(1), changed_roles: [role] } });
		await drive('POST', '/api/code-source/notify', 200, { json: { commit: commit(2), changed_roles: [role] } });
		await drive('POST', '/api/roles/{name}/pin', 200, { url: `/api/roles/${role}/pin`, json: { commit: commit(1) } });
		await drive('POST', '/api/nodes/{id}/mark-synced', 200, {
			url: `${nodeUrl}/mark-synced`,
			json: { role, commit: commit(1) }
		});
		await drive('POST', '/api/updates/trigger', 200, { json: { scope: { roles: [role] }, dry_run: true } });

		await drive('POST', '/api/auth/tokens', 201, { json: { name: `openapi-${suffix}`, scopes: ['read'] } });
		const user = await drive('POST', '/api/users', 201, {
			json: { username: `openapi-${suffix}`, password: 'openapi spec passphrase', role: 'viewer' }
		});
		await drive('PATCH', '/api/users/{id}', 200, { url: `/api/users/${user.id}`, json: { disabled: true } });

		const settings = await (await call('/api/notify/settings', { headers: auth.token })).json();
		await drive('PUT', '/api/notify/settings', 200, { json: settings });
		// A documentation address (TEST-NET-1): public, so allowed, and never sent anything by this spec.
		const channel = await drive('POST', '/api/notify/channels', 201, {
			json: {
				name: `openapi-${suffix}`,
				kind: 'webhook',
				url: 'https://192.0.2.10/flotilla',
				events: ['rollout.paused']
			}
		});
		cleanup.push(['/api/notify/channels/{id}', `/api/notify/channels/${channel.id}`]);

		const hold = await drive('POST', '/api/updates/system/holds', 201, {
			json: { scope: 'node', target: node.id, pattern: 'linux-image-*', reason: 'openapi spec' }
		});
		cleanup.push(['/api/updates/system/holds/{id}', `/api/updates/system/holds/${hold.id}`]);
		const window = await drive('POST', '/api/updates/system/windows', 201, {
			json: { scope: 'node', target: node.id, start: '02:00', end: '04:00', time_zone: 'UTC', days: ['sunday'] }
		});
		cleanup.push(['/api/updates/system/windows/{id}', `/api/updates/system/windows/${window.id}`]);
		await drive('POST', '/api/updates/system/windows/{id}/skip', 200, {
			url: `/api/updates/system/windows/${window.id}/skip`,
			json: { skip: true }
		});

		const manifest = {
			version: `0.0.1-openapi.${suffix}`,
			sha: commit(1),
			channel: 'beta',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-06-01T00:00:00Z'
		};
		const release = await drive('POST', '/api/releases', 201, {
			json: { ...manifest, signature: hmacSignature(manifest, RELEASE_SECRET) }
		});
		const rollout = { release_id: release.id, target: { nodes: [node.id] }, strategy: 'immediate' };
		await drive('POST', '/api/rollouts/preview', 200, { json: rollout });
		await drive('POST', '/api/rollouts', 200, { json: { ...rollout, dry_run: true } });

		await drive('POST', '/api/security/certificates/roles', 201, {
			json: { role, cert_path: `/etc/${role}/cert.pem`, key_path: `/etc/${role}/key.pem`, reload_command: ['true'] }
		});
		await drive('POST', '/api/security/certificates/rotate', 200, { json: { nodes: [node.id], dry_run: true } });
		await drive('POST', '/api/ssh-keys/rotate', 200, { json: { nodes: [node.id], dry_run: true } });
		await drive('POST', '/api/inventory/import', 200, {
			url: `/api/inventory/import?credential_id=${cred.id}&dry_run=1`,
			body: `[web]\nopenapi-inv-${suffix} ansible_host=127.0.1.60\n`,
			type: 'text/plain'
		});
	} finally {
		for (const [path, url] of cleanup) {
			const res = await call(url, { method: 'DELETE', headers: headersFor(doc.paths[path]!.delete!) });
			expect(res.status, `DELETE ${url}`).toBe(204);
		}
	}
	expect(mismatches).toEqual([]);
	expect(checked.size).toBeGreaterThanOrEqual(25);
});

test('the event streams refuse a bad documented query or header value naming it, and stream with good ones', async () => {
	const { runId } = await seedFleet();
	const bad: Record<string, string[]> = {
		after: ['abc', '-1', '1.5', ' ', '0x10', '99999999999999999999'],
		types: ['', 'run.bogus', 'nope.*', 'run.state;drop'],
		'Last-Event-ID': ['abc', '-1', '1e3', '']
	};
	const good: Record<string, string> = { after: '0', types: 'run.state,task.*', 'Last-Event-ID': '1' };
	for (const path of ['/api/events', '/api/runs/{id}/events']) {
		const op = doc.paths[path]!.get!;
		const params = (op.parameters ?? []).filter((p) => p.in === 'query' || p.in === 'header');
		// What is tried below is what the document lists: a parameter it gains or loses changes this list.
		expect(params.map((p) => `${p.in} ${p.name}`).sort()).toEqual([
			'header Last-Event-ID',
			'query after',
			'query types'
		]);
		expect(op.responses['400']).toBeDefined();
		const url = path.replace('{id}', runId);
		const send = (param: { name: string; in: string }, value: string, signal?: AbortSignal) =>
			call(param.in === 'query' ? `${url}?${new URLSearchParams({ [param.name]: value })}` : url, {
				headers: { ...headersFor(op), ...(param.in === 'header' ? { [param.name]: value } : {}) },
				signal
			});
		for (const param of params) {
			for (const value of bad[param.name]!) {
				const res = await send(param, value);
				const body = await res.json().catch(() => null);
				expect(res.status, `${path} ${param.name}=${JSON.stringify(value)}`).toBe(400);
				expect(body?.error?.code).toBe('validation_failed');
				expect(Object.keys(body?.error?.fields ?? {})).toEqual([param.name]);
			}
			const abort = new AbortController();
			const res = await send(param, good[param.name]!, abort.signal);
			expect(res.status, `${path} ${param.name}=${good[param.name]}`).toBe(200);
			expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
			const first = await res.body!.getReader().read();
			expect(new TextDecoder().decode(first.value)).toContain('retry: 2000');
			abort.abort();
		}
	}
});

test('the reference page shows every operation, grouped, with who may call it; it works by keyboard and at 390 px', async ({
	page
}) => {
	await page.setViewportSize({ width: 1280, height: 900 });
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.viewer.username);
	await page.getByLabel('Password').fill(people.viewer.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await page.getByRole('link', { name: 'API', exact: true }).click();
	await expect(page.getByRole('heading', { name: 'API reference' })).toBeVisible();
	const operationCount = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).length, 0);
	await expect(page.getByTestId('operation')).toHaveCount(operationCount);
	await expect(page.getByRole('heading', { name: 'Nodes', exact: true })).toBeVisible();
	await page.screenshot({ path: 'test-results/openapi-page-top.png' });

	// By keyboard: focus the POST /api/nodes summary and open it with Enter.
	const addNode = page.locator('#postNodes');
	await addNode.locator(':scope > summary').focus();
	await page.keyboard.press('Enter');
	await expect(addNode.getByText('Who may call it:')).toBeVisible();
	await expect(addNode.getByText('admin scope or role')).toBeVisible();
	const body = addNode.getByRole('list', { name: 'POST /api/nodes request body' });
	await expect(body.getByText('credential_id')).toBeVisible();
	await expect(body.locator('li', { hasText: 'credential_id' }).getByText('required')).toBeVisible();
	await expect(body.locator('li', { hasText: /^port/ }).getByText('required')).toHaveCount(0);
	await page.screenshot({ path: 'test-results/openapi-page-desktop.png', fullPage: false });

	await page.setViewportSize({ width: 390, height: 844 });
	await addNode.scrollIntoViewIfNeeded();
	expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
	await page.screenshot({ path: 'test-results/openapi-page-390.png', fullPage: false });
});
