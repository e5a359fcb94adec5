import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020.js';
import { expect, test } from '@playwright/test';
import { bearer, call, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * The OpenAPI document against the running console: what it says an endpoint accepts and answers is what the
 * endpoint does. Everything here is driven by the document (no list of fields of its own), so an endpoint whose
 * schema changes without the document (or the other way round) fails here:
 * - each documented body field, sent with a value its documented type excludes, is refused with a 400 naming it;
 * - each documented required field, left out, is named in the 400;
 * - a body with an undocumented field is refused where the document says no other fields are allowed;
 * - each documented example is accepted (anything but a 400);
 * - real answers of GET endpoints validate against their documented response schemas.
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
			const res = await call(concrete(path), { method, headers: headersFor(op), json: { [field]: wrong } });
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
		const res = await call(concrete(path), {
			method,
			headers: headersFor(op),
			json: schema.additionalProperties === false ? { zz_not_documented: 1 } : {}
		});
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
		const res = await call(concrete(path), { method, headers: headersFor(op), json: example });
		expect(res.status, `${method} ${path}: ${await res.clone().text()}`).not.toBe(400);
		expect(res.status).toBeLessThan(500);
	}
});

/** A credential, a node (on an address of this spec's testbed range where nothing listens) and a check run of it. */
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
	const check = await post('/api/runs', { kind: 'check', nodes: [(await node.json()).id] });
	expect(check.status).toBe(202);
}

test('real answers of GET endpoints validate against their documented response schemas', async () => {
	await seedFleet();
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
		const res = await call(url, { headers: headersFor(op) });
		expect(res.status, url).toBe(200);
		const validate = compiled.get(path) ?? validator.compile(schema);
		compiled.set(path, validate);
		if (!validate(await res.json())) mismatches.push(`GET ${url}: ${validator.errorsText(validate.errors)}`);
		checked.push(path);
	}
	expect(mismatches).toEqual([]);
	// The one-of-a-kind paths are only reached through a list with an item in it: these lists were not empty.
	expect(checked).toEqual(
		expect.arrayContaining(['/api/version', '/api/me', '/api/nodes/{id}', '/api/runs/{id}', '/api/users/{id}'])
	);
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
