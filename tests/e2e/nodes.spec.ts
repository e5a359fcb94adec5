import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { call, consoleDatabase, cookie, people, signInAs } from './support/console';

let bed: Testbed;
const db = consoleDatabase();
test.beforeAll(async () => {
	bed = await startTestbed({ hosts: 1, firstHost: 95 });
});
test.afterAll(async () => {
	await bed?.stop();
	await db.end();
});

const countRows = async (table: 'nodes' | 'credentials') =>
	(await db`select count(*)::int as n from ${db(table)}`)[0]!.n as number;

test('credential and node endpoints refuse bad input with the field named, and change nothing', async () => {
	const admin = await signInAs('admin');
	const [nodesBefore, credsBefore] = [await countRows('nodes'), await countRows('credentials')];
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });

	const notAKey = await post('/api/credentials', { name: 'junk', private_key: 'ssh-ed25519 AAAA not private' });
	expect(notAKey.status).toBe(400);
	expect((await notAKey.json()).error.fields).toHaveProperty('private_key');
	const badName = await post('/api/credentials', { name: '../etc', private_key: bed.clientPrivateKey });
	expect((await badName.json()).error.fields).toHaveProperty('name');

	const good = await post('/api/credentials', { name: 'e2e-key', private_key: bed.clientPrivateKey });
	expect(good.status).toBe(201);
	const cred = await good.json();
	expect(JSON.stringify(cred)).not.toContain('PRIVATE KEY');
	expect(cred.public_key).toMatch(/^ssh-ed25519 /);
	const listed = await call('/api/credentials', { headers: cookie(admin) });
	expect(await listed.text()).not.toContain('PRIVATE KEY');

	for (const [body, field] of [
		[{ name: 'n1', host: '-oProxyCommand=touch /tmp/x', credential_id: cred.id }, 'host'],
		[{ name: 'n1', host: 'a;b', credential_id: cred.id }, 'host'],
		[{ name: 'n1', host: 'web.example', port: 70000, credential_id: cred.id }, 'port'],
		[{ name: 'n1', host: 'web.example', user: 'root; rm -rf /', credential_id: cred.id }, 'user'],
		[{ name: 'n1', host: 'web.example', credential_id: '00000000-0000-4000-8000-000000000000' }, 'credential_id'],
		[
			{ name: 'n1', host: 'web.example', credential_id: cred.id, host_key_fingerprint: 'MD5:aa:bb' },
			'host_key_fingerprint'
		],
		[{ name: 'n1', host: 'web.example', credential_id: cred.id, roles: ['Not A Role'] }, 'roles.0'],
		[{ name: 'n1', host: 'web.example', credential_id: cred.id, policy: 'yolo' }, 'policy']
	] as const) {
		const res = await post('/api/nodes', body);
		expect(res.status, JSON.stringify(body)).toBe(400);
		expect((await res.json()).error.fields, JSON.stringify(body)).toHaveProperty([field]);
	}
	expect(await countRows('nodes')).toBe(nodesBefore);

	const node = await (
		await post('/api/nodes', { name: 'api-node', host: bed.hosts[0]!.address, credential_id: cred.id })
	).json();
	expect(node).toMatchObject({
		name: 'api-node',
		port: 22,
		user: 'root',
		// None of its own: its roles' default applies (docs/system-updates.md, "Policies").
		policy: null,
		connection_status: 'unchecked'
	});
	expect((await post('/api/nodes', { name: 'api-node', host: 'x.example', credential_id: cred.id })).status).toBe(409);
	const strict = await call(`/api/nodes/${node.id}`, {
		method: 'PATCH',
		headers: cookie(admin),
		json: { hostname: 'x' }
	});
	expect(strict.status).toBe(400);
	const badAccept = await post(`/api/nodes/${node.id}/host-key/accept`, { fingerprint: 'yes please' });
	expect((await badAccept.json()).error.fields).toHaveProperty('fingerprint');
	expect((await call(`/api/credentials/${cred.id}`, { method: 'DELETE', headers: cookie(admin) })).status).toBe(409);

	// An operator may test a connection but not change the fleet.
	const operator = await signInAs('operator');
	expect((await call(`/api/nodes/${node.id}/check`, { method: 'POST', headers: cookie(operator) })).status).toBe(200);
	expect((await call(`/api/nodes/${node.id}`, { method: 'DELETE', headers: cookie(operator) })).status).toBe(403);
	expect((await call(`/api/nodes/${node.id}`, { method: 'DELETE', headers: cookie(admin) })).status).toBe(204);
	expect(await countRows('credentials')).toBe(credsBefore + 1);
});

test('an admin adds a node in the browser, reviews its host key, pins it and connects', async ({ page }) => {
	const host = bed.hosts[0]!;
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await page.goto('/settings');
	await page.getByRole('link', { name: 'Nodes and credentials' }).click();
	await expect(page.getByRole('heading', { level: 1, name: 'Nodes and credentials' })).toBeVisible();

	await page.getByLabel('Name', { exact: true }).last().fill('browser-key');
	await page.getByLabel('Private key (OpenSSH or PEM: ed25519, RSA, ECDSA)').fill(bed.clientPrivateKey);
	await page.getByRole('button', { name: 'Store credential' }).click();
	await expect(page.getByTestId('credentials-list')).toContainText('browser-key');
	// The action's notice shows last: SvelteKit moves the focus to the page right before it, after the list
	// updated, and a field filled between the two would lose what was typed.
	await expect(page.getByRole('status').filter({ hasText: 'Stored credential browser-key' })).toBeVisible();

	await page.locator('#node-name').fill('testbed-01');
	await page.locator('#node-host').fill(host.address);
	await page.locator('#node-roles').fill('backend, Bad Role');
	await page.locator('#node-labels').fill('env=test');
	await page.locator('#node-credential').selectOption({ label: 'browser-key' });
	await page.getByRole('button', { name: 'Add node' }).click();
	// The bad item is named next to the field it was typed in, and what was typed is kept.
	await expect(page.locator('#node-roles-error')).toHaveText(
		'“Bad Role” must be lower-case letters, digits, dashes or underscores'
	);
	await expect(page.locator('#node-roles')).toHaveValue('backend, Bad Role');
	await page.locator('#node-roles').fill('backend, worker');
	await page.getByRole('button', { name: 'Add node' }).click();
	const row = page.locator('tr[data-node="testbed-01"]');
	await expect(row).toContainText('not checked');

	await row.getByRole('button', { name: 'Test connection' }).click();
	const dialog = page.getByTestId('host-key-review');
	await expect(dialog).toContainText('The host key of testbed-01 is not accepted yet');
	await expect(page.getByTestId('presented-fingerprint')).toHaveText(host.hostKeyFingerprint);
	await page.screenshot({ path: 'test-results/screenshots/host-key-dialog.png', fullPage: true });
	await dialog.getByRole('button', { name: 'Accept and pin this key' }).click();
	await expect(row).toContainText(host.hostKeyFingerprint);

	await row.getByRole('button', { name: 'Test connection' }).click();
	await expect(page.getByRole('status').filter({ hasText: 'testbed-01 answered in' })).toContainText('Linux');
	await expect(row).toContainText('reachable');

	// The machine is reinstalled (a new host key): the console refuses it and says so.
	const newKey = await bed.changeHostKey(host);
	await row.getByRole('button', { name: 'Test connection' }).click();
	await expect(page.getByTestId('host-key-review')).toContainText('The host key of testbed-01 has changed');
	await expect(row).toContainText('HOST KEY CHANGED');
	await page.screenshot({ path: 'test-results/screenshots/host-key-changed.png', fullPage: true });

	// The overview says why the node cannot be updated, and filters by it.
	await page.goto('/');
	await page.getByLabel('Connection').selectOption({ label: 'HOST KEY CHANGED' });
	await expect(page).toHaveURL(/connection=host_key_changed/);
	await expect(page.locator('tr[data-node]')).toHaveCount(1);
	await expect(page.locator('tr[data-node="testbed-01"]')).toContainText('HOST KEY CHANGED');

	// The node's own page shows the presented key for review, and an admin pins it there.
	await page.locator('tr[data-node="testbed-01"]').getByRole('link', { name: 'testbed-01' }).click();
	const review = page.getByTestId('host-key-review');
	await expect(review).toContainText('The host key of testbed-01 has changed');
	await expect(review.getByTestId('presented-fingerprint')).toHaveText(newKey);
	await page.screenshot({ path: 'test-results/screenshots/node-host-key-changed.png', fullPage: true });
	await review.getByRole('button', { name: 'Accept and pin this key' }).click();
	await expect(page.getByText(`Pinned ${newKey} for testbed-01.`)).toBeVisible();
	await expect(review).toHaveCount(0);
	await page.getByRole('button', { name: 'Check', exact: true }).click();
	await expect(page.getByRole('status').filter({ hasText: 'testbed-01 answered in' })).toContainText('Linux');

	const audit = await (await call('/api/audit?action=node.', { headers: cookie(await signInAs('admin')) })).json();
	const actions = audit.items.map((r: { action: string }) => r.action);
	expect(actions).toEqual(
		expect.arrayContaining(['node.create', 'node.host_key_accept', 'node.check', 'node.host_key_changed'])
	);
});

test('removing a node, deleting a credential and revoking a token ask first; declining changes nothing', async ({
	page
}) => {
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await (
		await post('/api/credentials', { name: 'confirm-key', private_key: bed.clientPrivateKey })
	).json();
	const node = await post('/api/nodes', { name: 'confirm-node', host: '127.0.1.96', credential_id: cred.id });
	expect(node.status).toBe(201);
	const token = await post('/api/auth/tokens', { name: 'confirm-token', scopes: ['read'] });
	expect(token.status).toBe(201);

	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();

	/** Clicks, answers the browser's question, and returns what it asked. */
	const answer = async (button: ReturnType<typeof page.getByRole>, accept: boolean) => {
		let message = '';
		page.once('dialog', (d) => {
			message = d.message();
			void (accept ? d.accept() : d.dismiss());
		});
		await button.click();
		return message;
	};
	const exists = async (sql: 'nodes' | 'credentials', name: string) =>
		(await db`select count(*)::int as n from ${db(sql)} where name = ${name}`)[0]!.n === 1;

	await page.goto('/settings/nodes');
	const remove = page.getByRole('button', { name: 'Remove confirm-node' });
	expect(await answer(remove, false)).toContain('Remove confirm-node from the fleet?');
	await expect(remove).toBeVisible();
	expect(await exists('nodes', 'confirm-node')).toBe(true);
	await answer(remove, true);
	await expect(remove).toHaveCount(0);
	expect(await exists('nodes', 'confirm-node')).toBe(false);

	const del = page.getByRole('button', { name: 'Delete credential confirm-key' });
	expect(await answer(del, false)).toContain('Delete the credential confirm-key?');
	expect(await exists('credentials', 'confirm-key')).toBe(true);
	await answer(del, true);
	await expect(del).toHaveCount(0);
	expect(await exists('credentials', 'confirm-key')).toBe(false);

	await page.goto('/settings');
	const row = page.getByTestId('token-table').getByRole('row', { name: /confirm-token/ });
	const revoke = row.getByRole('button', { name: 'Revoke confirm-token' });
	expect(await answer(revoke, false)).toContain('Revoke the token confirm-token?');
	await expect(row).toContainText('active');
	await answer(revoke, true);
	await expect(row).toContainText('revoked');
});
