import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { baseURL, call, consoleDatabase, cookie, people, signInAs } from './support/console';

/**
 * The console as operators live in it (issue 19): plan dialogs used by keyboard, a node edited from its page,
 * several nodes changed at once (in Settings → Nodes and by POST /api/nodes/bulk), an update of the selected nodes,
 * and a run's log searched. Testbed hosts 127.0.1.3 and .4 only.
 */

const shots = 'test-results/screenshots';
let bed: Testbed;
const db = consoleDatabase();
let admin = '';
let credential = '';
const stamp = Date.now() % 1_000_000;

const post = (path: string, json: unknown, session = admin) =>
	call(path, { method: 'POST', headers: cookie(session), json });

async function addNode(name: string, extra: Record<string, unknown> = {}) {
	const res = await post('/api/nodes', {
		name,
		host: bed.hosts[0]!.address,
		port: bed.hosts[0]!.port,
		credential_id: credential,
		...extra
	});
	expect(res.status, await res.clone().text()).toBe(201);
	return (await res.json()) as { id: string; name: string };
}

const nodeRow = async (id: string) =>
	(await db`select name, host, port, username, roles, policy, labels, control_plane from nodes where id = ${id}`)[0];

async function signInPage(page: Page, role: 'admin' | 'operator' = 'admin') {
	const session = role === 'admin' ? admin : await signInAs(role);
	const [name, ...value] = session.split(';')[0]!.split('=');
	await page.context().addCookies([{ name: name!, value: value.join('='), url: baseURL }]);
}

/** Every element focused while pressing Tab `times` times is inside the dialog. */
async function tabStaysInside(page: Page, dialogTestId: string, key: 'Tab' | 'Shift+Tab', times: number) {
	const seen: string[] = [];
	for (let i = 0; i < times; i++) {
		await page.keyboard.press(key);
		const where = await page.evaluate((id) => {
			const el = document.activeElement as HTMLElement | null;
			const inside = !!el && !!document.querySelector(`[data-testid="${id}"]`)?.contains(el);
			return `${inside ? 'in' : 'OUT'}:${el?.tagName}:${el?.getAttribute('aria-label') ?? el?.textContent?.trim().slice(0, 30)}`;
		}, dialogTestId);
		seen.push(where);
	}
	expect(
		seen.filter((s) => s.startsWith('OUT')),
		seen.join(' | ')
	).toEqual([]);
	return seen;
}

test.describe.configure({ mode: 'default' });

test.beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 3 });
	admin = await signInAs('admin');
	const cred = await post('/api/credentials', { name: `nm-key-${stamp}`, private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	credential = (await cred.json()).id;
});

test.afterAll(async () => {
	await bed?.stop();
	await db.end();
});

test('the plan dialog keeps keyboard focus inside, closes by Escape, Close or Cancel, and gives focus back', async ({
	page
}) => {
	await addNode(`nm-plan-${stamp}`);
	await signInPage(page, 'operator');
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto('/');
	const opener = page.getByRole('button', { name: 'Update All' });
	const dialog = page.getByTestId('plan-dialog');

	// Opened from the keyboard: focus moves into the dialog, and Tab / Shift+Tab never leave it.
	await opener.focus();
	await page.keyboard.press('Enter');
	await expect(dialog).toBeVisible();
	await expect(page.getByRole('dialog')).toBeFocused();
	const forward = await tabStaysInside(page, 'plan-dialog', 'Tab', 12);
	// It went round: the first control it reached came again.
	expect(forward.slice(1)).toContain(forward[0]);
	await tabStaysInside(page, 'plan-dialog', 'Shift+Tab', 12);
	await page.screenshot({ path: `${shots}/plan-dialog-keyboard-1440.png` });

	await page.keyboard.press('Escape');
	await expect(dialog).toHaveCount(0);
	await expect(opener).toBeFocused();

	// The Close button, reached and pressed by keyboard.
	await page.keyboard.press('Enter');
	await expect(dialog).toBeVisible();
	await dialog.getByRole('button', { name: 'Close' }).focus();
	await page.keyboard.press('Enter');
	await expect(dialog).toHaveCount(0);
	await expect(opener).toBeFocused();

	// Cancel as well; and a click on the page behind does not take focus out of the open dialog.
	await page.keyboard.press('Enter');
	await expect(dialog).toBeVisible();
	await page.evaluate(() => (document.querySelector('#fleet-q') as HTMLElement | null)?.focus());
	expect(
		await page.evaluate(() => !!document.querySelector('[data-testid="plan-dialog"]')?.contains(document.activeElement))
	).toBe(true);
	await dialog.getByRole('button', { name: 'Cancel' }).press('Enter');
	await expect(dialog).toHaveCount(0);
	await expect(opener).toBeFocused();
});

test('a node is edited from its page with the add-node fields: refused input is named, a good edit is saved and audited', async ({
	page
}) => {
	const node = await addNode(`nm-edit-${stamp}`, { roles: ['web'], policy: 'security' });
	await signInPage(page);
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto(`/nodes/${node.id}`);
	const edit = page.getByTestId('node-edit');
	await edit.getByText('Edit this node').click();
	await expect(edit.getByLabel('Name', { exact: true })).toHaveValue(node.name);
	await expect(edit.getByLabel('Roles (comma separated)')).toHaveValue('web');
	await expect(edit.getByLabel('Update policy')).toHaveValue('security');

	// Refused by the same schema as the API: each reason next to its field, nothing changed.
	await edit.getByLabel('Name', { exact: true }).fill('not a name!');
	await edit.getByLabel('SSH port').fill('70000');
	// Emptied, a field is refused, not read as "leave it as it is".
	await edit.getByLabel('Host name or address').fill('');
	await edit.getByLabel('Roles (comma separated)').fill('web, Bad Role');
	await edit.getByRole('button', { name: 'Save changes' }).click();
	await expect(page.locator('#edit-name-error')).toContainText('letters, digits');
	await expect(page.locator('#edit-port-error')).toContainText('1 to 65535');
	await expect(page.locator('#edit-roles-error')).toContainText('Bad Role');
	await expect(page.locator('#edit-host-error')).toBeVisible();
	await expect(edit.getByLabel('Name', { exact: true })).toHaveValue('not a name!');
	expect(await nodeRow(node.id)).toMatchObject({ name: node.name, port: bed.hosts[0]!.port, roles: ['web'] });

	const renamed = `nm-edited-${stamp}`;
	await edit.getByLabel('Name', { exact: true }).fill(renamed);
	await edit.getByLabel('SSH port').fill('2222');
	await edit.getByLabel('Host name or address').fill(bed.hosts[0]!.address);
	await edit.getByLabel('User').fill('deploy');
	await edit.getByLabel('Roles (comma separated)').fill('web, worker');
	await edit.getByLabel('Labels (name=value, comma separated)').fill('env=staging, dc=ams');
	await edit.getByLabel('Update policy').selectOption('manual');
	await edit.getByLabel('Control plane: updated first; a failure there stops a run').check();
	await edit.getByRole('button', { name: 'Save changes' }).click();
	await expect(page.getByText(`Saved ${renamed}.`)).toBeVisible();
	await expect(page.getByRole('heading', { level: 1, name: renamed })).toBeVisible();
	await page.screenshot({ path: `${shots}/node-edit-1440.png`, fullPage: true });
	expect(await nodeRow(node.id)).toMatchObject({
		name: renamed,
		host: bed.hosts[0]!.address,
		port: 2222,
		username: 'deploy',
		roles: ['web', 'worker'],
		labels: { env: 'staging', dc: 'ams' },
		policy: 'manual',
		control_plane: true
	});
	const [audit] = await db`select actor_name, details from audit_log
		where action = 'node.update' and target_id = ${node.id} order by at desc limit 1`;
	expect(audit).toMatchObject({ actor_name: people.admin.username, details: { name: renamed, policy: 'manual' } });

	await page.setViewportSize({ width: 390, height: 844 });
	await page.screenshot({ path: `${shots}/node-edit-390.png`, fullPage: true });

	// An operator sees the node but no edit form, and the action refuses them.
	const operator = await signInAs('operator');
	const refused = await call(`/nodes/${node.id}?/edit`, {
		method: 'POST',
		headers: { ...cookie(operator), accept: 'application/json', 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ name: 'by-operator', host: '127.0.1.3' })
	});
	expect(refused.status).toBe(403);
	expect((await nodeRow(node.id))!.name).toBe(renamed);
});

test('POST /api/nodes/bulk: bad input is refused naming the field and changes nothing; each action applies to all, audited', async () => {
	const a = await addNode(`nm-bulk-a-${stamp}`, { roles: ['web'] });
	const b = await addNode(`nm-bulk-b-${stamp}`, { roles: ['web', 'db'] });
	const bulk = (json: unknown, session = admin) => post('/api/nodes/bulk', json, session);
	const before = [await nodeRow(a.id), await nodeRow(b.id)];

	for (const [body, field] of [
		[{ action: 'paint', nodes: [a.id] }, 'action'],
		[{ action: 'add_role', nodes: [], role: 'x' }, 'nodes'],
		[{ action: 'add_role', nodes: ['not-a-uuid'], role: 'x' }, 'nodes.0'],
		[{ action: 'add_role', nodes: [a.id] }, 'role'],
		[{ action: 'add_role', nodes: [a.id], role: 'Bad Role' }, 'role'],
		[{ action: 'set_policy', nodes: [a.id] }, 'policy'],
		[{ action: 'set_policy', nodes: [a.id], policy: 'yolo' }, 'policy'],
		// Unknown keys are refused as everywhere in the API (under `_`, naming the key).
		[{ action: 'delete', nodes: [a.id], extra: 1 }, '_'],
		// One unknown node refuses the whole request: the known one is not changed either.
		[{ action: 'set_policy', nodes: [a.id, '00000000-0000-4000-8000-000000000000'], policy: 'full' }, 'nodes']
	] as const) {
		const res = await bulk(body);
		expect(res.status, JSON.stringify(body)).toBe(400);
		const err = (await res.json()).error;
		expect(err.fields, JSON.stringify(body)).toHaveProperty([field]);
	}
	expect([await nodeRow(a.id), await nodeRow(b.id)]).toEqual(before);

	// An operator may not; nothing changes.
	const operator = await signInAs('operator');
	expect((await bulk({ action: 'set_policy', nodes: [a.id], policy: 'full' }, operator)).status).toBe(403);
	expect((await nodeRow(a.id))!.policy).toBeNull();

	const added = await bulk({ action: 'add_role', nodes: [a.id, b.id], role: 'edge' });
	expect(added.status).toBe(200);
	expect(await added.json()).toEqual({
		action: 'add_role',
		nodes: [
			{ id: a.id, name: a.name },
			{ id: b.id, name: b.name }
		]
	});
	expect((await nodeRow(a.id))!.roles).toEqual(['web', 'edge']);
	expect((await nodeRow(b.id))!.roles).toEqual(['web', 'db', 'edge']);

	expect((await bulk({ action: 'remove_role', nodes: [a.id, b.id], role: 'web' })).status).toBe(200);
	expect((await nodeRow(a.id))!.roles).toEqual(['edge']);
	expect((await nodeRow(b.id))!.roles).toEqual(['db', 'edge']);

	expect((await bulk({ action: 'set_policy', nodes: [a.id, b.id], policy: 'full' })).status).toBe(200);
	expect([(await nodeRow(a.id))!.policy, (await nodeRow(b.id))!.policy]).toEqual(['full', 'full']);

	const audits = await db`select action, target_id, details from audit_log
		where target_id in (${a.id}, ${b.id}) and details->>'bulk' = 'true' order by id`;
	expect(audits.map((r) => [r.action, r.target_id, r.details])).toEqual([
		['node.update', a.id, { bulk: true, add_role: 'edge' }],
		['node.update', b.id, { bulk: true, add_role: 'edge' }],
		['node.update', a.id, { bulk: true, remove_role: 'web' }],
		['node.update', b.id, { bulk: true, remove_role: 'web' }],
		['node.update', a.id, { bulk: true, policy: 'full' }],
		['node.update', b.id, { bulk: true, policy: 'full' }]
	]);

	expect((await bulk({ action: 'delete', nodes: [a.id, b.id] })).status).toBe(200);
	expect(await db`select id from nodes where id in (${a.id}, ${b.id})`).toHaveLength(0);
	const deleted = await db`select target_id, details from audit_log
		where action = 'node.delete' and target_id in (${a.id}, ${b.id}) order by id`;
	expect(deleted.map((r) => r.details)).toEqual([
		{ bulk: true, name: a.name },
		{ bulk: true, name: b.name }
	]);
});

test('Settings → Nodes: select nodes, add a role and set the policy; a delete asks first, naming the nodes', async ({
	page
}) => {
	const [x, y, z] = [
		await addNode(`nm-ui-x-${stamp}`),
		await addNode(`nm-ui-y-${stamp}`),
		await addNode(`nm-ui-z-${stamp}`)
	];
	await signInPage(page);
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto('/settings/nodes');
	const bar = page.getByTestId('bulk-bar');
	await expect(bar.getByRole('button', { name: 'Apply' })).toBeDisabled();

	// Select all checks every row; unchecking it clears them.
	await page.getByLabel('Select all nodes').check();
	const total = await page.locator('[data-testid="nodes-table"] tbody tr[data-node]').count();
	await expect(page.getByTestId('bulk-selected')).toHaveText(`${total} node${total === 1 ? '' : 's'} selected`);
	await page.getByLabel('Select all nodes').uncheck();
	await expect(page.getByTestId('bulk-selected')).toHaveText('0 nodes selected');

	await page.getByLabel(`Select ${x.name}`).check();
	await page.getByLabel(`Select ${y.name}`).check();
	await bar.getByLabel('Change').selectOption('add_role');
	await bar.getByLabel('Role').fill('Bad Role');
	await bar.getByRole('button', { name: 'Apply' }).click();
	await expect(page.locator('#bulk-role-error')).toContainText('lower-case');
	await bar.getByLabel('Role').fill('edge');
	await bar.getByRole('button', { name: 'Apply' }).click();
	await expect(page.getByText(`Added the role edge to 2 nodes: ${x.name}, ${y.name}.`)).toBeVisible();
	expect((await nodeRow(x.id))!.roles).toEqual(['edge']);
	expect((await nodeRow(y.id))!.roles).toEqual(['edge']);
	expect((await nodeRow(z.id))!.roles).toEqual([]);
	await expect(page.locator(`tr[data-node="${x.name}"]`)).toContainText('edge');

	await bar.getByLabel('Change').selectOption('set_policy');
	await bar.getByLabel('Policy').selectOption('manual');
	await bar.getByRole('button', { name: 'Apply' }).click();
	await expect(page.getByText(`Set the update policy to manual on 2 nodes: ${x.name}, ${y.name}.`)).toBeVisible();
	expect([(await nodeRow(x.id))!.policy, (await nodeRow(y.id))!.policy, (await nodeRow(z.id))!.policy]).toEqual([
		'manual',
		'manual',
		// Untouched: still none of its own (its roles' default applies).
		null
	]);
	await page.screenshot({ path: `${shots}/bulk-nodes-1440.png`, fullPage: true });

	// Delete: the question names what goes; declining keeps them, agreeing removes exactly them.
	await bar.getByLabel('Change').selectOption('delete');
	const questions: string[] = [];
	page.once('dialog', (d) => {
		questions.push(d.message());
		void d.dismiss();
	});
	await bar.getByRole('button', { name: 'Delete 2 nodes…' }).click();
	await expect.poll(() => questions.length).toBe(1);
	expect(questions[0]).toContain(`Delete 2 nodes from the fleet: ${x.name}, ${y.name}?`);
	expect(await db`select id from nodes where id in (${x.id}, ${y.id})`).toHaveLength(2);

	page.once('dialog', (d) => void d.accept());
	await bar.getByRole('button', { name: 'Delete 2 nodes…' }).click();
	await expect(page.getByText(`Deleted 2 nodes: ${x.name}, ${y.name}.`)).toBeVisible();
	await expect(page.locator(`tr[data-node="${x.name}"]`)).toHaveCount(0);
	await expect(page.locator(`tr[data-node="${z.name}"]`)).toHaveCount(1);
	expect(await db`select id from nodes where id in (${x.id}, ${y.id})`).toHaveLength(0);

	await page.getByLabel(`Select ${z.name}`).check();
	await page.setViewportSize({ width: 390, height: 844 });
	await page.screenshot({ path: `${shots}/bulk-nodes-390.png`, fullPage: true });
});

test('Update selected on the Fleet Overview plans an update of the checked nodes only', async ({ page }) => {
	const [p, q] = [await addNode(`nm-sel-p-${stamp}`), await addNode(`nm-sel-q-${stamp}`)];
	await signInPage(page, 'operator');
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto('/?q=nm-sel-');
	await expect(page.getByRole('button', { name: /Update selected/ })).toHaveCount(0);
	await page.getByLabel(`Select ${p.name}`).check();
	await page.getByLabel(`Select ${q.name}`).check();
	const opener = page.getByRole('button', { name: 'Update selected (2)' });
	await opener.click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog).toBeVisible();
	// The plan, and the confirmation it would post, cover these two nodes and nothing else.
	const scope = JSON.parse((await dialog.locator('input[name="scope"]').inputValue()) as string);
	expect([...scope.nodes].sort()).toEqual([p.id, q.id].sort());
	await page.screenshot({ path: `${shots}/update-selected-1440.png` });
	await page.keyboard.press('Escape');
	await expect(dialog).toHaveCount(0);
	await expect(opener).toBeFocused();
	await page.setViewportSize({ width: 390, height: 844 });
	await page.screenshot({ path: `${shots}/overview-selected-390.png`, fullPage: true });
});

test('a run log is searched: only the tasks whose output holds the text, and only those lines', async ({ page }) => {
	const up = await addNode(`nm-log-up-${stamp}`, { host_key_fingerprint: bed.hosts[0]!.hostKeyFingerprint });
	await bed.stopHost(bed.hosts[1]!);
	const down = await addNode(`nm-log-down-${stamp}`, {
		host: bed.hosts[1]!.address,
		port: bed.hosts[1]!.port,
		host_key_fingerprint: bed.hosts[1]!.hostKeyFingerprint
	});
	const started = await post('/api/runs', { kind: 'check', nodes: [up.id, down.id] });
	expect(started.status).toBe(202);
	const runId = (await started.json()).run_id as string;
	await expect
		.poll(async () => (await (await call(`/api/runs/${runId}`, { headers: cookie(admin) })).json()).ended_at, {
			timeout: 60_000
		})
		.toBeTruthy();

	// A line of the reachable node's output that the other node's output does not hold.
	const log = (await (await call(`/api/runs/${runId}/log`, { headers: cookie(admin) })).text()).split('\n');
	const textOf = (line: string) =>
		line
			.split(' ')
			.slice(2)
			.join(' ')
			.replace(/^\[\w+\] /, '');
	const upLines = log.filter((l) => l.startsWith(`${up.name} `)).map(textOf);
	const downText = log
		.filter((l) => l.startsWith(`${down.name} `))
		.map(textOf)
		.join('\n')
		.toLowerCase();
	const needle = upLines.map((t) => t.trim()).find((t) => t.length >= 4 && !downText.includes(t.toLowerCase()));
	expect(needle, `a line only ${up.name} printed, in:\n${log.join('\n')}`).toBeTruthy();
	const holding = upLines.filter((t) => t.toLowerCase().includes(needle!.toLowerCase())).length;

	await signInPage(page, 'operator');
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto(`/runs/${runId}`);
	await expect(page.locator('tr[data-task]')).toHaveCount(2);
	await page.getByLabel('Search the log').fill(needle!);
	await expect(page.getByTestId('log-search-result')).toHaveText(`1 task with “${needle}” in the log`);
	await expect(page.locator('tr[data-task]')).toHaveCount(1);
	await expect(page.locator(`tr[data-task="${up.name}"]`)).toHaveCount(1);
	const pane = page.locator(`tr[data-log-for="${up.name}"] [data-testid="live-log"]`);
	await expect(pane.getByTestId('log-matches')).toHaveText(
		`Lines holding “${needle}”: ${holding} of ${upLines.length}`
	);
	await page.screenshot({ path: `${shots}/run-log-search-1440.png`, fullPage: true });

	await page.getByLabel('Search the log').fill('no such text anywhere 0xdeadbeef');
	await expect(page.getByTestId('log-search-result')).toHaveText(
		'0 tasks with “no such text anywhere 0xdeadbeef” in the log'
	);
	await expect(page.locator('tr[data-task]')).toHaveCount(0);
	await page.getByLabel('Search the log').fill('');
	await expect(page.locator('tr[data-task]')).toHaveCount(2);
	await expect(page.locator('tr[data-log-for]')).toHaveCount(0);
	await page.setViewportSize({ width: 390, height: 844 });
	await page.getByLabel('Search the log').fill(needle!);
	await page.screenshot({ path: `${shots}/run-log-search-390.png`, fullPage: true });
	await bed.startHost(bed.hosts[1]!);
});
