import { type Browser, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startReceiver } from '../support/receiver';
import { call, cookie, people, signInAs } from './support/console';

/**
 * Settings > Notifications in the browser: an admin finds a loopback receiver refused, allows private targets
 * (asked first), adds a signed webhook, sends a test and sees it delivered with the receiver's answer.
 */

const shots = 'test-results/screenshots';
let receiver: Awaited<ReturnType<typeof startReceiver>>;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	receiver = await startReceiver(() => ({ status: 200, body: 'received' }));
});

test.afterAll(async () => {
	// Leave the console as other specs expect it: private targets refused.
	const admin = await signInAs('admin');
	await call('/api/notify/settings', { method: 'PUT', headers: cookie(admin), json: { allow_private_targets: false } });
	await receiver?.close();
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

test('the API names the field of a bad channel', async () => {
	const admin = await signInAs('admin');
	const res = await call('/api/notify/channels', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: 'bad', kind: 'webhook', url: 'ftp://example.com/', events: ['run.failed'] }
	});
	expect(res.status).toBe(400);
	expect((await res.json()).error.fields).toMatchObject({ url: 'must be an http or https URL' });
	const refused = await call('/api/notify/channels', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: 'loop', kind: 'webhook', url: `${receiver.url}/x`, events: ['run.failed'] }
	});
	expect(refused.status).toBe(400);
	expect((await refused.json()).error.fields.url).toContain('loopback, link-local or private');
});

test('an admin adds a webhook, sends a test and sees it delivered', async ({ browser }) => {
	const page = await signInBrowser(browser);
	await page.goto('/settings');
	await page.getByRole('link', { name: 'Notifications' }).click();
	await expect(page.getByRole('heading', { name: 'Notifications' })).toBeVisible();

	const addChannel = async () => {
		await page.getByLabel('Name').fill('ops-hook');
		await page.getByLabel('URL').fill(`${receiver.url}/flotilla`);
		await page.getByLabel('Rollout paused').check();
		await page.getByRole('button', { name: 'Add channel' }).click();
	};
	// Refused while private targets are: the receiver listens on loopback.
	await addChannel();
	await expect(page.locator('#url-error')).toContainText('private');

	let question = '';
	page.once('dialog', (d) => {
		question = d.message();
		void d.accept();
	});
	await page.getByRole('button', { name: 'Allow them' }).click();
	await expect(page.getByTestId('private-targets')).toHaveText('Allowed');
	expect(question).toContain('private, loopback and link-local');

	await addChannel();
	await expect(page.getByText('Added ops-hook.')).toBeVisible();
	await expect(page.getByTestId('channel-secret')).toBeVisible();
	const channel = page.locator('section[data-channel="ops-hook"]');
	await expect(channel).toContainText('Signed webhook to http://127.0.0.1');
	await expect(channel).toContainText('Run failed · Rollout paused');

	await channel.getByRole('button', { name: 'Send test' }).click();
	await expect(channel.locator('tr[data-delivery="delivered"]')).toBeVisible({ timeout: 20_000 });
	await expect(channel.locator('tr[data-delivery="delivered"]')).toContainText('200 received');
	expect(receiver.received).toHaveLength(1);
	expect(receiver.received[0]!.headers['x-flotilla-signature']).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
	expect(JSON.parse(receiver.received[0]!.body)).toMatchObject({
		event: 'test',
		title: 'Test notification from Flotilla'
	});
	await page.screenshot({ path: `${shots}/notifications.png`, fullPage: true });

	const narrow = await signInBrowser(browser, 390);
	await narrow.goto('/settings/notifications');
	await expect(narrow.locator('section[data-channel="ops-hook"] tr[data-delivery="delivered"]')).toBeVisible();
	await narrow.screenshot({ path: `${shots}/notifications-390.png`, fullPage: true });

	page.once('dialog', (d) => void d.accept());
	await channel.getByRole('button', { name: 'Delete channel ops-hook' }).click();
	await expect(page.getByText('Channel deleted.')).toBeVisible();
	await expect(channel).toHaveCount(0);
});
