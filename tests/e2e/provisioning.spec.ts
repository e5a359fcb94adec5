import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { type Browser, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, consoleDatabase, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * Provisioning in the browser on one real sshd host (127.0.1.244): an admin gives a role what a fresh node needs
 * (a secret among it) on the Code Sync page, an operator provisions the node from its page after saying yes, and
 * the host ends with the service running and the env file 640 root:<account>; the secret is in no table. The API
 * refuses bad input naming the field.
 */

const shots = 'test-results/screenshots';
const run = promisify(execFile);
const SECRET = `e2e-${randomBytes(12).toString('hex')}`;
const ADDED_SECRET = `added-${randomBytes(12).toString('hex')}`;
let bed: Testbed;
const db = consoleDatabase();
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
let nodeId: string;

const unit = `[Service]
User={{ user }}
EnvironmentFile={{ env_file }}
WorkingDirectory={{ workdir }}
ExecStart=/bin/sleep infinity
`;

async function onHost(command: string): Promise<string> {
	const host = bed.hosts[0]!;
	const { stdout } = await run('ssh', [
		'-i',
		bed.clientPrivateKeyPath,
		'-o',
		`UserKnownHostsFile=${bed.knownHostsPath}`,
		'-o',
		'StrictHostKeyChecking=yes',
		'-o',
		'BatchMode=yes',
		`root@${host.address}`,
		command
	]);
	return stdout.trim();
}

async function signInBrowser(browser: Browser, role: 'admin' | 'operator'): Promise<Page> {
	const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people[role].username);
	await page.getByLabel('Password').fill(people[role].password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return page;
}

const fieldsOf = async (res: Response) => (await res.json()).error?.fields ?? {};

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	tokens = loadTokens();
	bed = await startTestbed({ hosts: 1, firstHost: 244, roles: ['web'] });
	admin = await signInAs('admin');
	const send = (method: string, path: string, json: unknown) => call(path, { method, headers: cookie(admin), json });
	const cred = await send('POST', '/api/credentials', {
		name: 'provisioning-ui-key',
		private_key: bed.clientPrivateKey
	});
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	const node = await send('POST', '/api/nodes', {
		name: 'prov-01',
		host: bed.hosts[0]!.address,
		credential_id: credentialId,
		host_key_fingerprint: bed.hosts[0]!.hostKeyFingerprint
	});
	expect(node.status).toBe(201);
	nodeId = (await node.json()).id;
	const role = await send('POST', '/api/roles', {
		name: 'site',
		path: '/opt/site',
		units: ['site.service'],
		health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
		health_timeout_seconds: 3
	});
	expect(role.status).toBe(201);
	const commit = await bed.addCommit('web', {
		message: 'health check',
		files: { 'healthcheck.sh': '#!/bin/sh\nsystemctl is-active --quiet site && test -s /etc/site/site.env\n' }
	});
	const notified = await call('/api/code-source/notify', {
		method: 'POST',
		headers: bearer(tokens.operate),
		json: { commit, changed_roles: ['site'] }
	});
	expect(notified.status).toBe(200);
	const def = await send('PUT', '/api/roles/site/provisioning', {
		repo_url: bed.origins.web,
		service_user: 'sitesvc',
		env_template: 'API_KEY={{ secret.API_KEY }}\n',
		secrets: { API_KEY: SECRET },
		unit_templates: [{ name: 'site.service', template: unit }]
	});
	expect(def.status).toBe(200);
	const body = await def.json();
	expect(body.secret_names).toEqual(['API_KEY']);
	expect(JSON.stringify(body)).not.toContain(SECRET);
});

test.afterAll(async () => {
	if (admin) {
		if (nodeId) await call(`/api/nodes/${nodeId}`, { method: 'DELETE', headers: cookie(admin) });
		await call('/api/roles/site', { method: 'DELETE', headers: cookie(admin) });
		if (credentialId) await call(`/api/credentials/${credentialId}`, { method: 'DELETE', headers: cookie(admin) });
	}
	await bed?.stop();
	await db.end();
});

test('the API refuses bad provisioning input with 400 naming the field; viewers get 403', async () => {
	const provision = (json: unknown, token = tokens.operate) =>
		call(`/api/nodes/${nodeId}/provision`, { method: 'POST', headers: bearer(token), json });
	let res = await provision({ role: 'nosuch' });
	expect(res.status).toBe(400);
	expect(await fieldsOf(res)).toHaveProperty('role');
	res = await provision({ role: 'site', phases: ['verify', 'clean'] });
	expect(res.status).toBe(400);
	expect(await fieldsOf(res)).toHaveProperty('phases');
	res = await provision({ role: 'site', phases: ['deploy', 'reboot'] });
	expect(res.status).toBe(400);
	expect(Object.keys(await fieldsOf(res))).toContain('phases.1');
	res = await provision({ role: 'site', extra: 1 });
	expect(res.status).toBe(400);
	res = await provision({ role: 'site' }, tokens.read);
	expect(res.status).toBe(403);

	const define = (json: unknown) =>
		call('/api/roles/site/provisioning', { method: 'PUT', headers: bearer(tokens.admin), json });
	for (const [json, field] of [
		[{ unit_templates: [{ name: '../../etc/passwd', template: 'x' }] }, 'unit_templates.0.name'],
		[{ unit_templates: [{ name: 'x.service', template: '{{ secret.API_KEY }}' }] }, 'unit_templates.0.template'],
		[{ env_template: 'A={{ ../../../etc/shadow }}' }, 'env_template'],
		[{ repo_url: '--upload-pack=touch /tmp/x' }, 'repo_url'],
		[{ packages: ['ok', '-o=evil'] }, 'packages.1'],
		[{ env_template: 'A={{ secret.MISSING }}' }, 'env_template']
	] as const) {
		res = await define(json);
		expect(res.status, JSON.stringify(json)).toBe(400);
		expect(Object.keys(await fieldsOf(res)), JSON.stringify(json)).toContain(field);
	}
	res = await call('/api/roles/nosuch/provisioning', { method: 'PUT', headers: bearer(tokens.admin), json: {} });
	expect(res.status).toBe(404);
});

test('an admin edits the role’s provisioning on the Code Sync page: secrets by name only', async ({ browser }) => {
	const page = await signInBrowser(browser, 'admin');
	await page.goto('/code-sync?edit=site');
	const form = page.getByTestId('provisioning-form');
	await expect(form).toBeVisible();
	await expect(form.getByTestId('secret-names')).toContainText('API_KEY');
	await expect(form.getByLabel('Service account')).toHaveValue('sitesvc');
	await form.getByLabel('Secret name 1').fill('EXTRA_TOKEN');
	await form.getByLabel('Secret value 1').fill(ADDED_SECRET);
	await form.getByLabel('Env file template').fill('API_KEY={{ secret.API_KEY }}\nEXTRA={{ secret.EXTRA_TOKEN }}\n');
	await form.getByRole('button', { name: 'Save provisioning' }).click();
	await expect(page.getByText('Saved provisioning of site.')).toBeVisible();
	await expect(page.getByTestId('provisioning-form').getByTestId('secret-names')).toContainText('EXTRA_TOKEN');
	// A hostile unit name is refused next to its field.
	await page.getByTestId('provisioning-form').getByLabel('Unit file name 1').fill('../../etc/passwd');
	await page.getByTestId('provisioning-form').getByRole('button', { name: 'Save provisioning' }).click();
	await expect(page.getByTestId('unit-row').first()).toContainText('must be a unit file name');
	// What was refused stays as typed, to be fixed in place.
	await expect(page.getByTestId('provisioning-form').getByLabel('Unit file name 1')).toHaveValue('../../etc/passwd');
	const html = await page.content();
	expect(html).not.toContain(SECRET);
	expect(html).not.toContain(ADDED_SECRET);
	await page.getByTestId('provisioning-form').scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/provisioning-role-form.png`, fullPage: true });
	await page.context().close();
});

test('an operator provisions the node from its page after saying yes; the host runs the role', async ({ browser }) => {
	const page = await signInBrowser(browser, 'operator');
	await page.goto(`/nodes/${nodeId}`);
	const section = page.getByTestId('provision');
	await section.getByLabel('Role').selectOption('site');
	let question = '';
	page.once('dialog', (d) => {
		question = d.message();
		void d.accept();
	});
	await section.getByRole('button', { name: 'Provision site' }).click();
	await expect(page.getByText('Provisioning for site started.')).toBeVisible();
	expect(question).toBe('Provision prov-01 as site?');
	const task = page.getByTestId('node-task');
	await expect(task).toContainText('Provision prov-01 as site', { timeout: 30_000 });
	await expect(task.getByText('succeeded')).toBeVisible({ timeout: 60_000 });
	await expect(task).toContainText('site: healthy');
	await expect(page.getByTestId('versions-table').locator('tr[data-role="site"]')).toBeVisible();
	await expect(section.getByTestId('provisioned')).toContainText('site: provisioned');
	await page.screenshot({ path: `${shots}/provisioning-node.png`, fullPage: true });
	await page.setViewportSize({ width: 390, height: 844 });
	await section.scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/provisioning-node-390.png` });

	expect(await onHost('stat -c "%a %U %G" /etc/site/site.env; systemctl is-active site')).toBe(
		'640 root sitesvc\nactive'
	);
	expect(await onHost('cat /etc/site/site.env')).toBe(`API_KEY=${SECRET}\nEXTRA=${ADDED_SECRET}`);

	// The secrets are nowhere in clear in the console's database: no table, no event, no audit row.
	const tables = await db<{ s: string; t: string }[]>`
		select table_schema as s, table_name as t from information_schema.tables
		where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`;
	expect(tables.length).toBeGreaterThan(10);
	for (const { s, t } of tables) {
		const [hit] = await db.unsafe(
			`select count(*)::int as n from "${s}"."${t}" x where x::text like $1 or x::text like $2`,
			[`%${SECRET}%`, `%${ADDED_SECRET}%`]
		);
		expect(hit!.n, `${s}.${t}`).toBe(0);
	}
	await page.context().close();
});
