import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { hostPaths, startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, cookie, loadTokens, people, signInAs } from './support/console';

/**
 * TLS Certificates in the browser on two real sshd hosts (127.0.1.198–199) serving real TLS: tls-2's file on
 * disk was renewed for 10 days but never reloaded (expiring, and a mismatch with what it serves). An operator
 * sees it on the page, rotates it through the plan dialog, watches the run, and finds it served fresh.
 */

const shots = 'test-results/screenshots';
let bed: Testbed;
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
const nodeIds = new Map<string, string>();

test.describe.configure({ mode: 'serial' });

async function waitForRunEnd(runId: string): Promise<string> {
	for (let i = 0; i < 300; i++) {
		const run = await (await call(`/api/runs/${runId}`, { headers: bearer(tokens.read) })).json();
		if (run.ended_at) return run.state;
		await new Promise((r) => setTimeout(r, 200));
	}
	throw new Error(`run ${runId} did not end`);
}

test.beforeAll(async () => {
	tokens = loadTokens();
	bed = await startTestbed({ hosts: 2, firstHost: 198, roles: [] });
	admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await post('/api/credentials', { name: 'certificates-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: `tls-${i + 1}`,
			host: host.address,
			credential_id: credentialId,
			host_key_fingerprint: host.hostKeyFingerprint,
			roles: ['tls'],
			control_plane: i === 0
		});
		expect(res.status).toBe(201);
		nodeIds.set(`tls-${i + 1}`, (await res.json()).id);
	}
	const role = await post('/api/security/certificates/roles', {
		role: 'tls',
		cert_path: hostPaths.tlsCert,
		key_path: hostPaths.tlsKey,
		endpoints: [{ port: 8443 }],
		reload_command: ['systemctl', 'reload', hostPaths.tlsUnit],
		validity_days: 60
	});
	expect(role.status).toBe(201);
	// The CA that issued the testbed's certificates is trusted; the internal CA is made in the browser below.
	const { readFile } = await import('node:fs/promises');
	const trust = await post('/api/security/certificates/ca/trust', {
		name: 'Testbed CA',
		cert_pem: await readFile(bed.caCertPath, 'utf8')
	});
	expect(trust.status).toBe(201);
	const renewed = await bed.issueCertificate(bed.hosts[1]!, 10);
	await writeFile(join(bed.hosts[1]!.root, hostPaths.tlsCert), renewed.cert);
	await writeFile(join(bed.hosts[1]!.root, hostPaths.tlsKey), renewed.key, { mode: 0o600 });
	const scan = await call('/api/security/certificates/scan', {
		method: 'POST',
		headers: bearer(tokens.operate),
		json: {}
	});
	expect(scan.status).toBe(202);
	expect(await waitForRunEnd((await scan.json()).run_id)).toBe('succeeded');
});

test.afterAll(async () => {
	if (admin) {
		for (const id of nodeIds.values()) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
		if (credentialId) await call(`/api/credentials/${credentialId}`, { method: 'DELETE', headers: cookie(admin) });
	}
	await bed?.stop();
});

async function signInBrowser(browser: Browser, role: 'admin' | 'operator', width = 1440): Promise<Page> {
	const page = await (await browser.newContext({ viewport: { width, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people[role].username);
	await page.getByLabel('Password').fill(people[role].password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return page;
}

test('an admin creates the internal CA on the page', async ({ browser }) => {
	const page = await signInBrowser(browser, 'admin');
	await page.getByRole('link', { name: 'TLS Certificates' }).click();
	// Importing garbage is refused, naming the field, and leaves no CA behind.
	const importForm = page.getByTestId('import-ca');
	await importForm.getByLabel('Internal CA to import').fill('Garbage CA');
	await importForm.getByLabel('Its certificate (PEM)').fill('not a certificate');
	await importForm.getByLabel('Its private key (PEM)').fill('not a key');
	await importForm.getByRole('button', { name: 'Import CA' }).click();
	await expect(page.getByRole('alert').first()).toContainText('Give exactly one CA certificate in PEM');
	await expect(importForm.locator('.field-error')).toBeVisible();
	const cas = await (await call('/api/security/certificates/ca', { headers: bearer(tokens.read) })).json();
	// Only the testbed's CA, trusted before: no imported one.
	expect(cas.items.map((c: { name: string }) => c.name)).not.toContain('Garbage CA');
	await page.getByLabel('New internal CA').fill('Flotilla e2e CA');
	await page.getByRole('button', { name: 'Create CA' }).click();
	await expect(page.getByText('Created the internal CA Flotilla e2e CA')).toBeVisible();
	await expect(page.getByText('internal CA, issues')).toBeVisible();
});

test('an operator sees the expiring, mismatched certificate, rotates it and sees the fresh one served', async ({
	browser
}) => {
	const page = await signInBrowser(browser, 'operator');
	// The Fleet Overview says so first: tls-2 expires within 30 days.
	await expect(page.getByTestId('count-CERT_EXPIRING').locator('p').first()).toHaveText('1');
	await expect(page.locator('tr[data-node="tls-2"]')).toContainText('CERT_EXPIRING');
	await page.screenshot({ path: `${shots}/fleet-cert-expiring.png`, fullPage: true });
	await page.getByRole('link', { name: 'TLS Certificates' }).click();
	const table = page.getByTestId('cert-inventory');
	const file2 = table.locator(`tr[data-cert="tls-2 ${hostPaths.tlsCert}"]`);
	const endpoint2 = table.locator(`tr[data-cert="tls-2 ${bed.hosts[1]!.address}:8443"]`);
	await expect(table.locator('tr[data-cert]')).toHaveCount(4);
	await expect(file2.locator('[data-level]')).toHaveAttribute('data-level', 'warning');
	await expect(file2.locator('[data-level]')).toHaveText('9');
	await expect(file2).toContainText('differs from what is served');
	await expect(endpoint2.locator('[data-level]')).toHaveText('89');
	await expect(page.locator('[data-alert="warning"]')).toHaveText('1');
	await expect(page.getByTestId('expiry-timeline').locator('li').first()).toContainText('0');
	await page.screenshot({ path: `${shots}/certificates.png`, fullPage: true });
	// At 1440 px the inventory fits its card: no sideways scroll, the last column in view.
	const card = table.locator('xpath=..');
	const { scroll, client } = await card.evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
	expect(scroll).toBeLessThanOrEqual(client);

	await file2.getByRole('checkbox').check();
	await page.getByRole('button', { name: 'Rotate selected (1)…' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog).toBeVisible();
	await expect(dialog.locator('tr[data-plan-node="tls-2"]')).toContainText('tls');
	await page.screenshot({ path: `${shots}/certificates-plan.png` });
	await dialog.getByRole('button', { name: 'Rotate 1 node' }).click();
	await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
	await expect(page.getByTestId('run-summary').getByTestId('progress-label')).toHaveText('1/1 · 100%', {
		timeout: 60_000
	});
	await expect(page.getByText('succeeded').first()).toBeVisible();
	await page.screenshot({ path: `${shots}/certificates-run.png`, fullPage: true });

	const served = await bed.servedCertificate(bed.hosts[1]!);
	await page.getByRole('link', { name: 'TLS Certificates' }).click();
	await expect(endpoint2.getByTestId('cert-fingerprint')).toHaveAttribute('title', served.fingerprint);
	await expect(file2.getByTestId('cert-fingerprint')).toHaveAttribute('title', served.fingerprint);
	await expect(file2).not.toContainText('differs from what is served');
	await expect(file2.locator('[data-level]')).toHaveText('59');
	await expect(page.locator('[data-alert="warning"]')).toHaveText('0');
});

test('the page works at 390 px', async ({ browser }) => {
	const page = await signInBrowser(browser, 'operator', 390);
	await page.goto('/certificates');
	await expect(page.getByRole('heading', { name: 'TLS Certificates' })).toBeVisible();
	await expect(page.getByTestId('cert-inventory')).toBeVisible();
	await page.screenshot({ path: `${shots}/certificates-390.png`, fullPage: true });
});

test('an admin trusts a CA, sets the TLS settings of a role and revokes an issued certificate on the page', async ({
	browser
}) => {
	const page = await signInBrowser(browser, 'admin');
	await page.goto('/certificates');
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-e2e-ca-'));
	execFileSync('openssl', [
		'req',
		'-x509',
		'-newkey',
		'ec',
		'-pkeyopt',
		'ec_paramgen_curve:P-256',
		'-nodes',
		'-days',
		'30',
		'-subj',
		'/CN=Partner CA',
		'-keyout',
		join(dir, 'ca.key'),
		'-out',
		join(dir, 'ca.pem')
	]);
	const trust = page.getByTestId('trust-ca');
	await trust.getByLabel('Trusted CA (certificate only)').fill('Partner CA');
	await trust.getByLabel('Its certificate (PEM)').fill(await readFile(join(dir, 'ca.pem'), 'utf8'));
	await trust.getByRole('button', { name: 'Add to the trust bundle' }).click();
	await expect(page.getByText('Added Partner CA to the trusted CAs.')).toBeVisible();
	await expect(page.locator('li', { hasText: 'Partner CA' }).first()).toContainText('trusted');

	const roles = page.getByTestId('cert-roles');
	await roles.getByLabel('Role', { exact: true }).fill('e2e-web');
	await roles.getByLabel('Certificate path').fill('/etc/ssl/e2e-web.pem');
	await roles.getByLabel('Key path').fill('/etc/ssl/e2e-web.key');
	await roles.getByLabel('Endpoints').fill('443 99999');
	await roles.getByLabel('Reload command').fill('systemctl\nreload\nnginx');
	await roles.getByRole('button', { name: 'Save role settings' }).click();
	await expect(page.getByRole('alert').first()).toContainText('endpoints');
	await roles.getByLabel('Endpoints').fill('443 8443:api.example.com');
	await roles.getByRole('button', { name: 'Save role settings' }).click();
	await expect(page.getByText('Saved the certificate settings of role e2e-web.')).toBeVisible();
	const saved = await (await call('/api/security/certificates/roles', { headers: bearer(tokens.read) })).json();
	expect(saved.items.find((r: { role: string }) => r.role === 'e2e-web')).toMatchObject({
		endpoints: [{ port: 443 }, { port: 8443, servername: 'api.example.com' }],
		reload_command: ['systemctl', 'reload', 'nginx'],
		issuer: 'ca'
	});

	// The rotation above issued tls-2 a certificate from the internal CA: revoke it, after saying no once.
	const issued = page.getByTestId('issued');
	const row = issued.locator('tr[data-issued]').first();
	await expect(row).toContainText('tls-2');
	let asked = '';
	page.once('dialog', (d) => {
		asked = d.message();
		void d.dismiss();
	});
	await row.getByRole('button', { name: /^Revoke / }).click();
	expect(asked).toMatch(/^Revoke certificate [0-9A-F]+ of tls-2\? The CRL will list it\.$/);
	page.once('dialog', (d) => void d.accept());
	await row.getByRole('button', { name: /^Revoke / }).click();
	await expect(row).toContainText('revoked (superseded)');
	await page.screenshot({ path: `${shots}/certificates-admin.png`, fullPage: true });
	const list = await (await call('/api/security/certificates/issued', { headers: bearer(tokens.read) })).json();
	expect(list.items.filter((c: { revoked_at: string | null }) => c.revoked_at).length).toBe(1);
});

test('an operator rotates all expiring certificates from the page: only the expiring node is in the plan', async ({
	browser
}) => {
	// tls-1's file now holds a certificate with 5 days left (renewed on disk, never reloaded); tls-2 is fresh.
	const soon = await bed.issueCertificate(bed.hosts[0]!, 5);
	await writeFile(join(bed.hosts[0]!.root, hostPaths.tlsCert), soon.cert);
	await writeFile(join(bed.hosts[0]!.root, hostPaths.tlsKey), soon.key, { mode: 0o600 });
	const scan = await call('/api/security/certificates/scan', {
		method: 'POST',
		headers: bearer(tokens.operate),
		json: { nodes: ['tls-1'] }
	});
	expect(await waitForRunEnd((await scan.json()).run_id)).toBe('succeeded');

	const page = await signInBrowser(browser, 'operator');
	await page.goto('/certificates');
	const file1 = page.getByTestId('cert-inventory').locator(`tr[data-cert="tls-1 ${hostPaths.tlsCert}"]`);
	await expect(file1.locator('[data-level]')).toHaveAttribute('data-level', 'critical');
	await expect(page.locator('[data-alert="critical"]')).toHaveText('1');
	await page.getByRole('button', { name: 'Rotate all expiring…' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog.locator('tr[data-plan-node]')).toHaveCount(1);
	await expect(dialog.locator('tr[data-plan-node="tls-1"] td').nth(3)).toHaveText('4');
	await expect(dialog).toContainText('Control plane first');
	await dialog.getByRole('button', { name: 'Rotate 1 node' }).click();
	await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
	await expect(page.getByTestId('run-summary').getByTestId('progress-label')).toHaveText('1/1 · 100%', {
		timeout: 60_000
	});
	await page.screenshot({ path: `${shots}/certificates-rotate-expiring-run.png`, fullPage: true });

	const served = await bed.servedCertificate(bed.hosts[0]!);
	expect(served.fingerprint).not.toBe(soon.fingerprint);
	await page.getByRole('link', { name: 'TLS Certificates' }).click();
	await expect(file1.getByTestId('cert-fingerprint')).toHaveAttribute('title', served.fingerprint);
	await expect(file1.locator('[data-level]')).toHaveText('59');
	for (const level of ['expired', 'critical', 'warning'])
		await expect(page.locator(`[data-alert="${level}"]`)).toHaveText('0');
	await expect(page.getByRole('button', { name: 'Rotate all expiring…' })).toBeDisabled();
	await page.screenshot({ path: `${shots}/certificates-after-rotating-expiring.png`, fullPage: true });
});

test('a node whose role has no endpoint is marked in the plan as not proven by handshake, and rotates', async ({
	browser
}) => {
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const role = await post('/api/security/certificates/roles', {
		role: 'vault',
		cert_path: hostPaths.tlsCert,
		key_path: hostPaths.tlsKey,
		endpoints: [],
		reload_command: ['systemctl', 'reload', hostPaths.tlsUnit],
		order: 50
	});
	expect(role.status).toBe(201);
	const patched = await call(`/api/nodes/${nodeIds.get('tls-2')}`, {
		method: 'PATCH',
		headers: cookie(admin),
		json: { roles: ['vault'] }
	});
	expect(patched.status).toBe(200);

	const page = await signInBrowser(browser, 'operator');
	await page.goto('/certificates');
	const file2 = page.getByTestId('cert-inventory').locator(`tr[data-cert="tls-2 ${hostPaths.tlsCert}"]`);
	await file2.getByRole('checkbox').check();
	await page.getByRole('button', { name: 'Rotate selected (1)…' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog.getByTestId('plan-warnings')).toHaveText(
		"Role vault has no endpoints (1 node): not proven by handshake; the new certificate is verified on the node's disk only, not as served"
	);
	await expect(dialog.locator('tr[data-plan-node="tls-2"]')).toContainText(
		'not proven by handshake: role vault has no endpoints'
	);
	await page.screenshot({ path: `${shots}/certificates-plan-no-endpoint.png` });
	await dialog.getByRole('button', { name: 'Rotate 1 node' }).click();
	await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/);
	await expect(page.getByTestId('run-summary').getByTestId('progress-label')).toHaveText('1/1 · 100%', {
		timeout: 60_000
	});
	const runId = page.url().split('/').at(-1)!;
	const log = await call(`/api/runs/${runId}/log`, { headers: bearer(tokens.read) });
	expect(await log.text()).toContain('verified on disk only (no endpoint to handshake)');
});
