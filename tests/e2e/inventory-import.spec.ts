import { readFileSync } from 'node:fs';
import { expect, test } from './support/test';
import { writeInventories } from '../testbed/inventory.ts';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { baseURL, bearer, call, consoleDatabase, cookie, loadTokens, people, signInAs } from './support/console';

let bed: Testbed;
let testbedIni: string;
const db = consoleDatabase();
test.beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 242 });
	testbedIni = (await writeInventories(bed)).ini;
});
test.afterAll(async () => {
	// Later specs check every node of the console; the ones made here leave with this spec.
	await db`delete from nodes where name like 'inv-%' or name = any(${bed?.hosts.map((h) => h.name) ?? []})`;
	await bed?.stop();
	await db.end();
});

const countNodes = async () => (await db`select count(*)::int as n from nodes`)[0]!.n as number;

// Closed ports on loopback: a check of these nodes (another spec's "check all") fails at once.
const inventory = `[inv_web]
inv-web[1:2] ansible_host=127.0.0.1 ansible_port=1

[inv_db]
inv-db1 ansible_host=127.0.0.1 ansible_port=2 flotilla_labels="env=e2e"

[inv_db:vars]
ansible_user=postgres
`;

async function credential(admin: string, name: string): Promise<string> {
	const res = await call('/api/credentials', {
		method: 'POST',
		headers: cookie(admin),
		json: { name, private_key: bed.clientPrivateKey }
	});
	expect(res.status).toBe(201);
	return (await res.json()).id;
}

test('the import endpoint previews, imports all or nothing, explains bad files by line, and is for admins', async () => {
	const admin = await signInAs('admin');
	const tokens = loadTokens();
	const credentialId = await credential(admin, 'inv-api-key');
	const post = (query: string, body: string, headers: Record<string, string> = {}) =>
		call(`/api/inventory/import?credential_id=${credentialId}${query}`, {
			method: 'POST',
			headers: { authorization: `Bearer ${tokens.admin}`, 'content-type': 'text/plain', ...headers },
			body
		});
	const before = await countNodes();

	const preview = await post('&dry_run=1', inventory);
	expect(preview.status).toBe(200);
	const plan = await preview.json();
	expect(plan).toMatchObject({ dry_run: true, format: 'ini', created: 3, skipped: 0, errors: [] });
	// Two hosts of the file on one address:port is worth a look, not a refusal.
	expect(plan.warnings).toEqual([
		{
			line: 2,
			host: 'inv-web2',
			message: '127.0.0.1:1 is also the address of node inv-web1 (line 2 of this inventory)'
		}
	]);
	expect(plan.nodes.map((n: { name: string; roles: string[] }) => [n.name, n.roles])).toEqual([
		['inv-web1', ['inv_web']],
		['inv-web2', ['inv_web']],
		['inv-db1', ['inv_db']]
	]);
	expect(await countNodes()).toBe(before);

	// A bad file: every error by line, nothing written; the same for YAML, from the YAML parser's positions.
	const bad = `${inventory}\n[inv_cache]\ninv-cache1 ansible_port=70000\ninv-cache2 ansible_user='unclosed\n`;
	for (const [body, lines] of [
		[bad, [11, 12]],
		['all:\n  hosts:\n    inv-y1:\n      ansible_port: [1\n', [5]]
	] as const) {
		const res = await post('', body);
		expect(res.status, body).toBe(400);
		const answer = await res.json();
		expect(answer.error.code).toBe('validation_failed');
		expect(answer.error.fields.inventory).toMatch(/^line \d+: /);
		expect(answer.errors.map((e: { line: number }) => e.line)).toEqual(lines);
		expect(answer.dry_run).toBe(true);
	}
	expect(await countNodes()).toBe(before);

	// Not for operators, by session or token.
	const operator = await signInAs('operator');
	const byOperator = await call(`/api/inventory/import?credential_id=${credentialId}`, {
		method: 'POST',
		headers: { ...cookie(operator), 'content-type': 'text/plain' },
		body: inventory
	});
	expect(byOperator.status).toBe(403);
	expect((await post('', inventory, bearer(tokens.operate))).status).toBe(403);

	// Bad requests name what is wrong, and are never a 500.
	const tooBig = await post('&dry_run=1', `# ${'x'.repeat(500 * 1024)}\n`);
	expect(tooBig.status).toBe(413);
	expect((await tooBig.json()).error).toMatchObject({
		code: 'payload_too_large',
		fields: { inventory: expect.any(String) }
	});
	// Over the server's own request limit (adapter-node's 512 KiB) the server refuses before the endpoint runs.
	expect((await post('&dry_run=1', 'x'.repeat(600 * 1024))).status).toBe(413);
	const asJson = await post('', JSON.stringify({ content: inventory }), { 'content-type': 'application/json' });
	expect(asJson.status).toBe(415);
	const noCredential = await call('/api/inventory/import?dry_run=1', {
		method: 'POST',
		headers: { ...bearer(tokens.admin), 'content-type': 'text/plain' },
		body: inventory
	});
	expect((await noCredential.json()).error.fields).toHaveProperty('credential_id');
	expect((await post('&format=toml', inventory)).status).toBe(400);
	const unknownGroup = await post('&role_groups=inv_web,nope', inventory);
	expect((await unknownGroup.json()).error.fields.role_groups).toMatch(/nope/);
	expect(await countNodes()).toBe(before);

	const created = await post('&role_groups=inv_db', inventory);
	expect(created.status).toBe(201);
	const result = await created.json();
	expect(result).toMatchObject({ dry_run: false, created: 3, skipped: 0 });
	expect(await countNodes()).toBe(before + 3);
	const listed = await (await call('/api/nodes?q=inv-', { headers: bearer(tokens.read) })).json();
	expect(
		listed.items.map((n: { name: string; user: string; port: number; roles: string[] }) => [
			n.name,
			n.user,
			n.port,
			n.roles
		])
	).toEqual([
		['inv-db1', 'postgres', 2, ['inv_db']],
		['inv-web1', 'root', 1, []],
		['inv-web2', 'root', 1, []]
	]);
	const again = await post('', inventory);
	expect(again.status).toBe(200);
	expect(await again.json()).toMatchObject({ created: 0, skipped: 3 });

	const audit = await (await call('/api/audit?action=inventory.', { headers: cookie(admin) })).json();
	expect(audit.items[0]).toMatchObject({ action: 'inventory.import', actor: 'admin' });
});

test('an admin uploads the testbed inventory, previews it, and imports it in the browser', async ({ page }) => {
	const admin = await signInAs('admin');
	const credentialId = await credential(admin, 'inv-browser-key');
	// One host is known already: the preview says it is skipped.
	const [first, second] = bed.hosts as [(typeof bed.hosts)[number], (typeof bed.hosts)[number]];
	const existing = await call('/api/nodes', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: second.name, host: second.address, credential_id: credentialId }
	});
	expect(existing.status).toBe(201);
	const before = await countNodes();

	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await page.goto('/settings/nodes');
	await page.getByRole('link', { name: 'Import an Ansible inventory' }).click();
	await expect(page.getByRole('heading', { level: 1, name: 'Import an Ansible inventory' })).toBeVisible();
	await page.getByLabel('Credential for every imported node').selectOption({ label: 'inv-browser-key' });

	// A bad file first: its errors, by line, and no way to import it.
	await page.getByLabel('Paste the inventory').fill('[web]\ninv-bad1 ansible_port=0\n[web:oops]\n');
	await page.getByRole('button', { name: 'Preview' }).click();
	const errors = page.getByTestId('import-errors');
	await expect(errors).toContainText('line 2 · inv-bad1: ansible_port: must be 1 to 65535');
	await expect(errors).toContainText('line 3: [web:oops]');
	await expect(page.getByRole('button', { name: /^Import/ })).toHaveCount(0);

	// The file `npm run testbed` writes, uploaded: it is read into the text box, then previewed.
	await page.getByLabel('…or upload a file').setInputFiles(testbedIni);
	await expect(page.getByLabel('Paste the inventory')).toHaveValue(readFileSync(testbedIni, 'utf8'));
	await page.getByRole('button', { name: 'Preview' }).click();
	const table = page.getByTestId('import-table');
	await expect(page.getByTestId('import-summary')).toContainText('1 to create, 1 to skip');
	await expect(table.locator(`tr[data-import-node="${first.name}"]`)).toContainText(`root@${first.address}:22`);
	await expect(table.locator(`tr[data-import-node="${first.name}"]`)).toContainText('create');
	await expect(table.locator(`tr[data-import-node="${second.name}"]`)).toContainText('skip');
	await expect(page.getByTestId('import-warnings')).toContainText('ansible_ssh_common_args is ignored');
	expect(await countNodes()).toBe(before);
	await page.screenshot({ path: 'test-results/screenshots/inventory-import-preview.png', fullPage: true });

	// Changed after the preview: nothing is imported; the new preview is shown to confirm instead.
	const box = page.getByLabel('Paste the inventory');
	// (At the top: hosts before the first section are ungrouped; below [all:vars] it would be a variable.)
	await box.fill(`inv-extra ansible_host=127.0.0.1 ansible_port=3\n${await box.inputValue()}`);
	await page.getByRole('button', { name: 'Import 1 node' }).click();
	await expect(page.getByRole('alert')).toContainText('changed since the preview');
	await expect(page.getByTestId('import-summary')).toContainText('2 to create, 1 to skip');
	expect(await countNodes()).toBe(before);

	await page.getByRole('button', { name: 'Import 2 nodes' }).click();
	await expect(page.getByRole('status')).toContainText('Imported 2 nodes; skipped 1 that exist already');
	await expect(page.getByTestId('import-summary')).toContainText('2 created, 1 skipped');
	expect(await countNodes()).toBe(before + 2);
	await page.screenshot({ path: 'test-results/screenshots/inventory-import-done.png', fullPage: true });

	await page.getByRole('link', { name: 'See the nodes' }).click();
	await expect(page.locator(`tr[data-node="${first.name}"]`)).toContainText(`root@${first.address}:22`);
	await expect(page.locator(`tr[data-node="${first.name}"]`)).toContainText('not checked');
	await expect(page.locator('tr[data-node="inv-extra"]')).toBeVisible();
});

test('the import form takes an uploaded file without JavaScript', async () => {
	const admin = await signInAs('admin');
	const [cred] = await db`select id from credentials where name = 'inv-api-key'`;
	const form = new FormData();
	form.set('credential_id', cred!.id);
	form.set('inventory', 'ignored when a file is sent');
	form.set('file', new Blob(['inv-file1 ansible_host=127.0.0.1\n']), 'hosts.ini');
	const res = await fetch(`${baseURL}/settings/nodes/import?/preview`, {
		method: 'POST',
		headers: { ...cookie(admin), origin: baseURL, accept: 'application/json', 'x-sveltekit-action': 'true' },
		body: form
	});
	expect(res.status).toBe(200);
	const answer = await res.json();
	expect(answer.type).toBe('success');
	expect(answer.data).toContain('inv-file1');
	expect(answer.data).not.toContain('ignored when a file is sent');
});
