import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { type Browser, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * SSH key rotation from Settings on three real sshd hosts (127.0.1.56–58): bad input is refused naming the field,
 * an admin looks at the dry run, rotates through the confirmation and watches the phases pass on every node;
 * afterwards the testbed's old key no longer logs in (openssh client).
 */

const run = promisify(execFile);
const shots = 'test-results/screenshots';
let bed: Testbed;
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
const nodeIds: string[] = [];

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	tokens = loadTokens();
	bed = await startTestbed({ hosts: 3, firstHost: 56, roles: [] });
	admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await post('/api/credentials', { name: 'ssh-keys-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: `keys-${i + 1}`,
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
			if (/^(ssh-keys-ui-key|safety net)/.test(c.name)) {
				await call(`/api/credentials/${c.id}`, { method: 'DELETE', headers: cookie(admin) });
			}
		}
	}
	await bed?.stop();
});

async function signInBrowser(browser: Browser, width = 1440): Promise<Page> {
	const page = await (await browser.newContext({ viewport: { width, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return page;
}

test('bad input is refused with 400 naming the field, and only admins may rotate', async () => {
	const rotate = (json: unknown, token = tokens.admin) =>
		call('/api/ssh-keys/rotate', { method: 'POST', headers: bearer(token), json });
	const cases: [unknown, string][] = [
		[{ credential_id: 'not-a-uuid' }, 'credential_id'],
		[{ credential_id: '6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f' }, 'credential_id'],
		[{ credential_id: credentialId, remove_safety_net: 'yes' }, 'remove_safety_net'],
		[{ credential_id: credentialId, nodes: [] }, 'nodes'],
		[{ credential_id: credentialId, nodes: ['no-such-node'] }, 'nodes'],
		[{ credential_id: credentialId, dry_run: 1 }, 'dry_run']
	];
	for (const [body, field] of cases) {
		const res = await rotate(body);
		expect(res.status, JSON.stringify(body)).toBe(400);
		const { error } = await res.json();
		expect(error.code).toBe('validation_failed');
		expect(Object.keys(error.fields ?? {}), JSON.stringify(body)).toContain(field);
	}
	// An unknown field is refused, named in the message (the API's convention for fields it does not know).
	const unknown = await rotate({ credential_id: credentialId, passphrase: 'x' });
	expect(unknown.status).toBe(400);
	expect((await unknown.json()).error.message).toContain('passphrase');
	expect((await rotate({ credential_id: credentialId }, tokens.operate)).status).toBe(403);
	const dry = await rotate({ credential_id: credentialId, dry_run: true });
	expect(dry.status).toBe(200);
	const { hosts } = await dry.json();
	expect(hosts.map((h: { node: string }) => h.node)).toEqual(['keys-1', 'keys-2', 'keys-3']);
	expect(
		hosts.every(
			(h: { survey: { consoleKeys: { credential: string }[] } }) =>
				h.survey.consoleKeys[0]!.credential === 'ssh-keys-ui-key'
		)
	).toBe(true);
});

test('an admin rotates the key from Settings and watches every phase pass on every node', async ({ browser }) => {
	test.setTimeout(180_000);
	const page = await signInBrowser(browser);
	await page.goto('/settings');
	await page.getByRole('link', { name: 'SSH key rotation' }).click();
	await expect(page.getByRole('heading', { name: 'SSH key rotation' })).toBeVisible();
	await page.getByLabel('Credential').selectOption({ label: 'ssh-keys-ui-key' });
	await page.getByRole('button', { name: 'Dry run' }).click();
	const dry = page.getByTestId('dry-run');
	await expect(dry.locator('tr[data-node]')).toHaveCount(3);
	await expect(dry.locator('tr[data-node="keys-1"]')).toContainText('ssh-keys-ui-key');
	await page.screenshot({ path: `${shots}/ssh-key-rotation-dry-run.png`, fullPage: true });

	let question = '';
	page.once('dialog', (d) => {
		question = d.message();
		void d.accept();
	});
	await page.getByLabel('Credential').selectOption({ label: 'ssh-keys-ui-key' });
	await page.getByRole('button', { name: 'Rotate…' }).click();
	await expect(page.getByText('Key rotation started')).toBeVisible();
	expect(question).toContain('Rotate the key ssh-keys-ui-key on every node');
	// This rotation's card, not an earlier one's (another spec's rotation may be listed too).
	const rotation = page.getByTestId('rotation').filter({ hasText: 'ssh-keys-ui-key → ssh-keys-ui-key ' });
	// The phases light up one after another as the page follows the event stream, without a reload.
	await expect(rotation.locator('[data-phase="K2"]')).toHaveAttribute('data-phase-state', /running|passed/, {
		timeout: 60_000
	});
	await page.screenshot({ path: `${shots}/ssh-key-rotation-running.png`, fullPage: true });
	await expect(rotation).toHaveAttribute('data-state', 'completed', { timeout: 120_000 });
	for (const p of ['survey', 'K1', 'K2', 'K3', 'K4', 'K5']) {
		await expect(rotation.locator(`[data-phase="${p}"]`)).toHaveAttribute('data-phase-state', 'passed');
	}
	await expect(rotation.locator('tr[data-node]')).toHaveCount(3);
	for (const n of ['keys-1', 'keys-2', 'keys-3']) {
		await expect(rotation.locator(`tr[data-node="${n}"]`)).toContainText('done');
	}
	await page.screenshot({ path: `${shots}/ssh-key-rotation.png`, fullPage: true });
	// The old key no longer logs in anywhere.
	for (const h of bed.hosts) {
		await expect(
			run('ssh', [
				'-i',
				bed.clientPrivateKeyPath,
				'-o',
				'IdentitiesOnly=yes',
				'-o',
				'BatchMode=yes',
				'-o',
				`UserKnownHostsFile=${bed.knownHostsPath}`,
				'-o',
				'ConnectTimeout=10',
				'-F',
				'/dev/null',
				`root@${h.address}`,
				'true'
			])
		).rejects.toThrow();
	}
	// At 390 px the page still fits.
	await page.setViewportSize({ width: 390, height: 900 });
	await page.reload();
	expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
	await page.screenshot({ path: `${shots}/ssh-key-rotation-390.png`, fullPage: true });
});
