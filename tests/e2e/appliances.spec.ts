import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, test } from './support/test';
import { ed25519Signature } from '../../src/lib/server/releases/signing.ts';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, loadTokens, people } from './support/console';

/**
 * An appliance release in the browser on three real sshd hosts (127.0.1.30–32) with the appliance's slot helper:
 * a signed image is uploaded in chunks, rolled out, and an operator watches each appliance go through the A/B
 * states on the rollout's page; the hosts' own slot files say it really happened.
 */

const HOSTS = 3;
const shots = 'test-results/screenshots';
// A key for these tests only: playwright.config.ts gives the console its public half.
const key = createPrivateKey(
	'-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFetvUvu8Li70D+2aWJfU81sOEe4eosNSX1sdeMkWrDA\n-----END PRIVATE KEY-----\n'
);
const publicPem = `-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAiw+AfOzIO7mej9/eb1M9ztyLxYqJ11K1QH6D49WcV9E=\n-----END PUBLIC KEY-----\n`;
let bed: Testbed;
const names = Array.from({ length: HOSTS }, (_, i) => `edge-ui-${i + 1}`);
const created = { nodes: [] as string[], credential: '' };
let releaseId = '';
const image = randomBytes(24 << 20);
const sha256 = createHash('sha256').update(image).digest('hex');

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	test.setTimeout(180_000);
	bed = await startTestbed({ hosts: HOSTS, firstHost: 30 });
	const { admin } = loadTokens();
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: bearer(admin), json });
	for (const h of bed.hosts) {
		await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
		await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), publicPem);
		await mkdir(join(h.root, 'var/lib/flotilla-testbed/units'), { recursive: true });
		await writeFile(join(h.root, 'var/lib/flotilla-testbed/units/appliance'), 'active\n');
	}
	const cred = await post('/api/credentials', { name: 'appliances-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	created.credential = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: names[i],
			host: host.address,
			credential_id: created.credential,
			host_key_fingerprint: host.hostKeyFingerprint,
			kind: 'appliance'
		});
		expect(res.status).toBe(201);
		created.nodes.push((await res.json()).id);
	}
	const manifest: Record<string, unknown> = {
		version: '7.0.0',
		sha: sha256,
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	const rel = await post('/api/releases', { ...manifest, signature: ed25519Signature(manifest, key) });
	expect(rel.status).toBe(201);
	releaseId = (await rel.json()).id;
	const signature = sign(null, Buffer.from(sha256), key).toString('hex');
	const unsigned = await post('/api/appliances/images', { release_id: releaseId, sha256, size: image.length });
	expect(unsigned.status).toBe(400);
	expect((await unsigned.json()).error.fields.signature).toMatch(/is required/);
	const declared = await post('/api/appliances/images', {
		release_id: releaseId,
		sha256,
		size: image.length,
		signature
	});
	expect(declared.status).toBe(201);
	const id = (await declared.json()).id;
	// Chunks under the server's body limit, each where the last one ended.
	for (let at = 0; at < image.length; at += 256 << 10) {
		const res = await call(`/api/appliances/images/${id}/content`, {
			method: 'PUT',
			headers: { ...bearer(admin), 'content-type': 'application/octet-stream', 'upload-offset': String(at) },
			body: image.subarray(at, at + (256 << 10))
		});
		expect(res.status).toBe(200);
	}
	const stored = await call(`/api/appliances/images/${id}`, { headers: bearer(admin) });
	expect(await stored.json()).toMatchObject({ state: 'complete', received_bytes: image.length });
});

test.afterAll(async () => {
	const { admin } = loadTokens();
	for (const id of created.nodes) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: bearer(admin) });
	if (created.credential) {
		await call(`/api/credentials/${created.credential}`, { method: 'DELETE', headers: bearer(admin) });
	}
	await bed?.stop();
});

test('an operator rolls an image out to appliances and watches their A/B states live', async ({ browser }) => {
	test.setTimeout(180_000);
	const { operate } = loadTokens();
	// Signed in before the rollout starts: a sign-in (argon2) on a busy machine can outlast the appliances' reboot.
	const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.operator.username);
	await page.getByLabel('Password').fill(people.operator.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	const res = await call('/api/rollouts', {
		method: 'POST',
		headers: bearer(operate),
		json: {
			release_id: releaseId,
			target: { nodes: names },
			strategy: 'immediate',
			stages: [{ percent: 100, bake_seconds: 0 }],
			concurrency: 3
		}
	});
	expect(res.status).toBe(201);
	const rollout = (await res.json()).id;
	await page.goto(`/rollouts/${rollout}`);
	const rows = page.getByTestId('rollout-node');
	// Live, without a reload by the test: the appliances reboot into the new slot, then pass their gate.
	await expect(rows.locator('[data-state="rebooting"], [data-state="verifying_health"]').first()).toBeVisible({
		timeout: 60_000
	});
	await page.screenshot({ path: `${shots}/appliances-rebooting.png`, fullPage: true });
	await expect(rows.locator('[data-state="succeeded"]')).toHaveCount(HOSTS, { timeout: 90_000 });
	await page.screenshot({ path: `${shots}/appliances-succeeded.png`, fullPage: true });
	for (const h of bed.hosts) expect(await bed.slotState(h)).toMatchObject({ active: 'b', good: 'b' });
});
