import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { ed25519Signature } from '../../src/lib/server/releases/signing.ts';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, loadTokens, people } from './support/console';

/**
 * An appliance's own page (docs/appliances.md, "The appliance's page") on real sshd hosts (127.0.1.1–2) with the
 * slot helper: opened before an image is pushed, it follows the update live to `succeeded` and then shows the
 * new slot active and committed with the image's version and sha256 and the gate that passed; it works by
 * keyboard and at 390 px. A server (127.0.1.2) has no such page.
 */

const shots = 'test-results/screenshots';
// A key for these tests only: playwright.config.ts gives the console its public half.
const key = createPrivateKey(
	'-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFetvUvu8Li70D+2aWJfU81sOEe4eosNSX1sdeMkWrDA\n-----END PRIVATE KEY-----\n'
);
const publicPem = `-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAiw+AfOzIO7mej9/eb1M9ztyLxYqJ11K1QH6D49WcV9E=\n-----END PUBLIC KEY-----\n`;
let bed: Testbed;
const created = { nodes: [] as string[], credential: '' };
let applianceId = '';
let serverId = '';
let imageId = '';
const image = randomBytes(4 << 20);
const sha256 = createHash('sha256').update(image).digest('hex');

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	test.setTimeout(180_000);
	bed = await startTestbed({ hosts: 2, firstHost: 1 });
	const { admin } = loadTokens();
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: bearer(admin), json });
	const h = bed.hosts[0]!;
	await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
	await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), publicPem);
	await mkdir(join(h.root, 'var/lib/flotilla-testbed/units'), { recursive: true });
	await writeFile(join(h.root, 'var/lib/flotilla-testbed/units/appliance'), 'active\n');
	const cred = await post('/api/credentials', { name: 'appliance-page-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	created.credential = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: i === 0 ? 'edge-page-1' : 'server-page-1',
			host: host.address,
			credential_id: created.credential,
			host_key_fingerprint: host.hostKeyFingerprint,
			kind: i === 0 ? 'appliance' : 'server'
		});
		expect(res.status).toBe(201);
		created.nodes.push((await res.json()).id);
	}
	[applianceId, serverId] = created.nodes as [string, string];
	const manifest: Record<string, unknown> = {
		version: '9.4.0',
		sha: sha256,
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	const rel = await post('/api/releases', { ...manifest, signature: ed25519Signature(manifest, key) });
	expect(rel.status).toBe(201);
	const signature = sign(null, Buffer.from(sha256), key).toString('hex');
	const declared = await post('/api/appliances/images', {
		release_id: (await rel.json()).id,
		sha256,
		size: image.length,
		signature
	});
	expect(declared.status).toBe(201);
	imageId = (await declared.json()).id;
	for (let at = 0; at < image.length; at += 256 << 10) {
		const res = await call(`/api/appliances/images/${imageId}/content`, {
			method: 'PUT',
			headers: { ...bearer(admin), 'content-type': 'application/octet-stream', 'upload-offset': String(at) },
			body: image.subarray(at, at + (256 << 10))
		});
		expect(res.status).toBe(200);
	}
});

test.afterAll(async () => {
	const { admin } = loadTokens();
	for (const id of created.nodes) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: bearer(admin) });
	if (created.credential) {
		await call(`/api/credentials/${created.credential}`, { method: 'DELETE', headers: bearer(admin) });
	}
	await bed?.stop();
});

async function signedIn(page: Page) {
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.operator.username);
	await page.getByLabel('Password').fill(people.operator.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
}

test('the page follows a push live, then shows the new slot, its image and the gate; the run is a keypress away', async ({
	browser
}) => {
	test.setTimeout(180_000);
	const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
	await signedIn(page);
	// From the node's page, by keyboard.
	await page.goto(`/nodes/${applianceId}`);
	const link = page.getByRole('link', { name: 'Slots and image updates' });
	await link.focus();
	await page.keyboard.press('Enter');
	await expect(page).toHaveURL(`/nodes/${applianceId}/appliance`);
	await expect(page.getByRole('heading', { name: 'edge-page-1: slots' })).toBeVisible();
	await expect(page.getByText('● live')).toBeVisible();
	await expect(page.getByTestId('appliance-update')).toHaveCount(0);

	const { operate, read } = loadTokens();
	const pushed = await call('/api/appliances/push', {
		method: 'POST',
		headers: bearer(operate),
		json: { image_id: imageId, nodes: ['edge-page-1'], window: 'ignore', reboot_timeout_seconds: 60 }
	});
	expect(pushed.status).toBe(201);
	const run = await pushed.json();
	// Live, without a reload by the test: the update appears and ends succeeded after its gate.
	const row = page.getByTestId('appliance-update');
	await expect(row).toHaveCount(1, { timeout: 30_000 });
	await expect(row).toHaveAttribute('data-state', 'succeeded', { timeout: 90_000 });
	await expect(row.getByRole('link', { name: `Run #${run.number}` })).toBeVisible();
	const slotB = page.getByTestId('slot-b');
	await expect(slotB.getByTestId('slot-active')).toBeVisible();
	await expect(slotB.getByTestId('slot-next')).toBeVisible();
	await expect(slotB.getByTestId('slot-good')).toBeVisible();
	await expect(slotB.getByTestId('slot-version')).toHaveText('9.4.0');
	await expect(slotB.getByTestId('slot-sha256')).toHaveText(sha256);
	await expect(page.getByTestId('slot-a').getByTestId('slot-active')).toHaveCount(0);
	await expect(page.getByTestId('last-gate')).toContainText('slot b: passed');
	await expect(page.getByTestId('boot-tries')).toContainText('0 of 3');
	await page.screenshot({ path: `${shots}/appliance-page.png`, fullPage: true });
	expect(await bed.slotState(bed.hosts[0]!)).toMatchObject({ active: 'b', next: 'b', good: 'b' });

	// The same as JSON.
	const api = await call(`/api/nodes/${applianceId}/appliance`, { headers: bearer(read) });
	expect(api.status).toBe(200);
	const body = await api.json();
	expect(body.slots).toMatchObject({ active: 'b', next: 'b', good: 'b', last_gate: { slot: 'b', passed: true } });
	expect(body.slots.slots[1].image).toEqual({ sha256, version: '9.4.0' });
	expect(body.updates).toHaveLength(1);
	expect(body.updates[0]).toMatchObject({ run_id: run.run_id, state: 'succeeded', version: '9.4.0' });

	// To the run by keyboard.
	await row.getByRole('link', { name: `Run #${run.number}` }).focus();
	await page.keyboard.press('Enter');
	await expect(page.getByRole('heading', { name: `Run #${run.number}` })).toBeVisible();
});

test('an admin installs the appliance side over SSH from the page; a bad value is named; an operator has no such form', async ({
	browser
}) => {
	test.setTimeout(120_000);
	const operator = await (await browser.newContext()).newPage();
	await signedIn(operator);
	await operator.goto(`/nodes/${applianceId}/appliance`);
	await expect(operator.getByTestId('slot-b')).toBeVisible();
	await expect(operator.getByTestId('appliance-install')).toHaveCount(0);

	const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await page.goto(`/nodes/${applianceId}/appliance`);
	const section = page.getByTestId('appliance-install');
	await section.getByText('Install over SSH').click();
	const unreachable = section.getByLabel('Watchdog: seconds without the console');
	await unreachable.fill('5');
	await section.getByRole('button', { name: 'Install the appliance side' }).click();
	await expect(section.getByText('must be at least 60')).toBeVisible();
	await expect(unreachable).toHaveAttribute('aria-invalid', 'true');
	await page.screenshot({ path: `${shots}/appliance-install-refused.png`, fullPage: true });

	await unreachable.fill('1800');
	await section.getByRole('button', { name: 'Install the appliance side' }).click();
	await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
	const runId = page.url().split('/').at(-1)!;
	const { read } = loadTokens();
	await expect
		.poll(async () => (await (await call(`/api/runs/${runId}`, { headers: bearer(read) })).json()).state, {
			timeout: 60_000
		})
		.toBe('succeeded');
	await page.getByRole('button', { name: 'Show the log of edge-page-1' }).click();
	await expect(page.getByText('slot b is booted, slot b is committed').first()).toBeVisible({ timeout: 30_000 });
	await page.screenshot({ path: `${shots}/appliance-install-run.png`, fullPage: true });
	const conf = await readFile(join(bed.hosts[0]!.root, 'etc/flotilla/watchdog.conf'), 'utf8');
	expect(conf).toMatch(/^unreachable_seconds=1800$/m);
	expect(conf).toMatch(/^console_url='http:\/\/[^']+\/healthz'$/m);
});

test('at 390 px the page fits the screen', async ({ browser }) => {
	const page = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
	await signedIn(page);
	await page.goto(`/nodes/${applianceId}/appliance`);
	await expect(page.getByTestId('slot-b')).toBeVisible();
	// Only the updates table scrolls sideways, inside its card: the page itself does not.
	expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
	await page.screenshot({ path: `${shots}/appliance-page-390.png`, fullPage: true });
});

test('a server has no appliance page; its JSON says it is a server, with no slots', async ({ browser }) => {
	const { read } = loadTokens();
	const api = await call(`/api/nodes/${serverId}/appliance`, { headers: bearer(read) });
	expect(api.status).toBe(200);
	expect(await api.json()).toMatchObject({
		node: { id: serverId, kind: 'server' },
		slots: null,
		updates: [],
		fallbacks: [],
		bad_releases: []
	});
	const bad = await call('/api/nodes/not-a-uuid/appliance', { headers: bearer(read) });
	expect(bad.status).toBe(400);
	const page = await (await browser.newContext()).newPage();
	await signedIn(page);
	const res = await page.goto(`/nodes/${serverId}/appliance`);
	expect(res?.status()).toBe(404);
});
