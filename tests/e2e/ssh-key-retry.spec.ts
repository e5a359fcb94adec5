import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * Trying a rotation's failed node again from Settings, on two real sshd hosts (127.0.1.253–254). The second host is
 * away while the rotation runs; when it is back its catch-up fails at K2 (sshd's RevokedKeys refuses the safety
 * net there); the admin fixes that and presses "Try failed nodes again…", and the node is finished: the testbed's
 * old key no longer logs in there (openssh client), and the console still reaches it.
 */

const run = promisify(execFile);
const shots = 'test-results/screenshots';
let bed: Testbed;
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
const nodeIds: string[] = [];
const revoked = () => join(bed.hosts[1]!.root, 'etc/ssh/revoked_keys');

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	tokens = loadTokens();
	bed = await startTestbed({ hosts: 2, firstHost: 253, roles: [] });
	const away = bed.hosts[1]!;
	await writeFile(revoked(), '');
	const config = join(away.root, 'etc/ssh/sshd_config');
	await writeFile(config, `${await readFile(config, 'utf8')}RevokedKeys ${revoked()}\n`);
	await bed.stopHost(away);
	await bed.startHost(away);
	admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await post('/api/credentials', { name: 'retry-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: `retry-${i + 1}`,
			host: host.address,
			credential_id: credentialId,
			host_key_fingerprint: host.hostKeyFingerprint
		});
		expect(res.status).toBe(201);
		nodeIds.push((await res.json()).id);
	}
});

test.afterAll(async () => {
	if (admin) {
		for (const id of nodeIds) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
		const all = (await (await call('/api/credentials', { headers: cookie(admin) })).json()) as {
			items?: { id: string; name: string }[];
		};
		for (const c of all.items ?? []) {
			if (/^(retry-ui-key|safety net)/.test(c.name)) {
				await call(`/api/credentials/${c.id}`, { method: 'DELETE', headers: cookie(admin) });
			}
		}
	}
	await bed?.stop();
});

const oldKeyLogsIn = (address: string) =>
	run('ssh', [
		...['-i', bed.clientPrivateKeyPath, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes'],
		...['-o', `UserKnownHostsFile=${bed.knownHostsPath}`, '-o', 'ConnectTimeout=10', '-F', '/dev/null'],
		...[`root@${address}`, 'true']
	]).then(
		() => true,
		() => false
	);

test('a node that failed is tried again from Settings and finished; the API refuses what cannot be retried', async ({
	browser
}) => {
	test.setTimeout(240_000);
	const [here, away] = bed.hosts as [Testbed['hosts'][0], Testbed['hosts'][0]];
	const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	// Signed in before leaving: a navigation started sooner cancels the sign-in and lands on the login page.
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await page.goto('/settings/ssh-keys');
	await bed.stopHost(away);
	page.once('dialog', (d) => void d.accept());
	await page.getByLabel('Credential').selectOption({ label: 'retry-ui-key' });
	await page.getByRole('button', { name: 'Rotate…' }).click();
	await expect(page.getByText('Key rotation started')).toBeVisible();
	// This rotation's card, not an earlier one's (another spec's rotation may be listed too).
	const rotation = page.getByTestId('rotation').filter({ hasText: 'retry-ui-key → retry-ui-key ' });
	await expect(rotation).toHaveAttribute('data-state', 'open', { timeout: 120_000 });
	await expect(rotation.locator('tr[data-node="retry-2"]')).toContainText('away');
	await expect(rotation.locator('tr[data-node="retry-1"]')).toContainText('done');

	// Back, but refusing the rotation's safety net: its catch-up fails at K2, before anything is removed.
	const creds = (await (await call('/api/credentials', { headers: cookie(admin) })).json()) as {
		items: { name: string; public_key: string }[];
	};
	const net = creds.items.find((c) => c.name.startsWith('safety net'))!;
	await writeFile(revoked(), `${net.public_key}\n`);
	await bed.startHost(away);
	const check = await call(`/api/nodes/${nodeIds[1]}/check`, { method: 'POST', headers: cookie(admin) });
	expect((await check.json()).reachable).toBe(true);
	await expect(rotation).toHaveAttribute('data-state', 'completed', { timeout: 120_000 });
	await expect(rotation.locator('tr[data-node="retry-2"]')).toContainText('failed');
	await expect(rotation.locator('tr[data-node="retry-2"]')).toContainText('safety-net key does not log in');
	// Its catch-up got through the dry run and K1 before K2 refused.
	await expect(rotation.locator('tr[data-node="retry-2"]')).toContainText('K1 add safety net');
	expect(await oldKeyLogsIn(away.address)).toBe(true);
	const retryButton = rotation.getByRole('button', { name: 'Try failed nodes again…' });
	await expect(retryButton).toBeVisible();
	await page.screenshot({ path: `${shots}/ssh-key-rotation-failed-node.png`, fullPage: true });

	// The API names the field; only admins may retry; a rotation that does not exist is 404.
	const rotationId = await rotation.locator('input[name="rotation_id"]').inputValue();
	const retry = (id: string, token = tokens.admin) =>
		call(`/api/ssh-keys/rotations/${id}/retry`, { method: 'POST', headers: bearer(token) });
	expect((await retry(rotationId, tokens.operate)).status).toBe(403);
	const bad = await retry('not-a-uuid');
	expect(bad.status).toBe(400);
	expect((await retry('6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f')).status).toBe(404);

	// Fixed; the admin tries it again and is asked first.
	await writeFile(revoked(), '');
	let question = '';
	page.once('dialog', (d) => {
		question = d.message();
		void d.accept();
	});
	await retryButton.click();
	await expect(page.getByText('Trying retry-2 again')).toBeVisible();
	expect(question).toContain('Try retry-2 again?');
	// It was completed before the retry too: the node's own state is what moves.
	await expect(rotation.locator('tr[data-node="retry-2"]')).toContainText('done', { timeout: 120_000 });
	await expect(rotation).toHaveAttribute('data-state', 'completed');
	await expect(retryButton).toHaveCount(0);
	await page.screenshot({ path: `${shots}/ssh-key-rotation-retried.png`, fullPage: true });
	for (const h of [here, away]) expect(await oldKeyLogsIn(h.address), h.name).toBe(false);
	const after = await call(`/api/nodes/${nodeIds[1]}/check`, { method: 'POST', headers: cookie(admin) });
	expect((await after.json()).reachable).toBe(true);
	// Nothing failed is left: the API says so, naming the rotation.
	const again = await retry(rotationId);
	expect(again.status).toBe(409);
	expect(Object.keys((await again.json()).error.fields ?? {})).toContain('rotation_id');
});
