import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Browser, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { bearer, call, consoleDatabase, cookie, loadTokens, people, postForm, signInAs } from './support/console';

/**
 * Code Sync in the browser on ten real sshd hosts (127.0.1.140–149) with git roles backend and frontend:
 * a commit is notified, the Fleet Overview shows the nodes behind, an operator reviews the plan of Update All,
 * confirms, and watches the run; a host whose health check fails goes back and shows FAILED with its log.
 */

const HOSTS = 10;
const shots = 'test-results/screenshots';
let bed: Testbed;
const db = consoleDatabase();
/** Read once the set-up project has made them (not at import, which comes first). */
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
const nodeIds = new Map<string, string>();
const names = Array.from({ length: HOSTS }, (_, i) => `cs-${String(i + 1).padStart(2, '0')}`);
/** cs-01 is the control plane (updated first); cs-04's frontend health check is the one that fails. */
const broken = 'cs-04';
let othersUpToDate = 0;

const healthy = '#!/bin/sh\nexit 0\n';
/** A commit whose health check fails on a host where the test put the marker `break-<tag>`. */
const breakable = (tag: string) => ({
	message: `frontend: health check ${tag}`,
	files: {
		'healthcheck.sh': `#!/bin/sh\n# Healthy unless the test marked this host.\ntest ! -e /etc/flotilla/break-${tag}\n`
	}
});

const operate = () => bearer(tokens.operate);
const notify = async (commit: string, role: string, message: string) => {
	const res = await call('/api/code-source/notify', {
		method: 'POST',
		headers: operate(),
		json: { commit, changed_roles: [role], message, author: 'Ada Lovelace' }
	});
	expect(res.status).toBe(200);
	return res.json();
};

/** An ed25519 OpenPGP public key as `gpg --armor --export` writes it. */
const PGP = `-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEaw6Y6hYJKwYBBAHaRw8BAQdATS1alI0r9+8OiRmNqeTHq5yEDMO62zLudt+S
lrxNxhm0HEV4YW1wbGUgPGRlcGxveUBleGFtcGxlLmNvbT6IkAQTFggAOBYhBAdB
tVC92Fd8x9cBPwZ3eoxj7i7ZBQJrDpjqAhsDBQsJCAcCBhUKCQgLAgQWAgMBAh4B
AheAAAoJEAZ3eoxj7i7ZMpAA/RrfpcPtc0krIVWZsLMdBT6uQhEjwn3wPlGQFARe
cVw3AP45WTE83PgUZEfb8FkW2Hkb1ZHqlge70Ic4qC4TYOnGBQ==
=UAH+
-----END PGP PUBLIC KEY BLOCK-----`;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	tokens = loadTokens();
	bed = await startTestbed({ hosts: HOSTS, firstHost: 140, roles: ['backend', 'frontend'] });
	admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await post('/api/credentials', { name: 'code-sync-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: names[i],
			host: host.address,
			credential_id: credentialId,
			host_key_fingerprint: host.hostKeyFingerprint,
			roles: ['backend', 'frontend'],
			labels: { tier: i < 5 ? 'blue' : 'green' },
			control_plane: i === 0
		});
		expect(res.status).toBe(201);
		nodeIds.set(names[i]!, (await res.json()).id);
	}
	for (const [name, order] of [
		['backend', 10],
		['frontend', 20]
	] as const) {
		const res = await post('/api/roles', {
			name,
			description: `The ${name} of the testbed app`,
			path: `/opt/${name}`,
			units: [`${name}.service`],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
			health_timeout_seconds: 3,
			order
		});
		expect(res.status).toBe(201);
	}
});

test.afterAll(async () => {
	// Leave the shared console as the other specs expect it: no nodes or roles of ours.
	if (admin) {
		for (const id of nodeIds.values()) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
		for (const role of ['backend', 'frontend'])
			await call(`/api/roles/${role}`, { method: 'DELETE', headers: cookie(admin) });
		if (credentialId) await call(`/api/credentials/${credentialId}`, { method: 'DELETE', headers: cookie(admin) });
	}
	await bed?.stop();
	await db.end();
});

async function signInBrowser(browser: Browser, role: 'admin' | 'operator' | 'viewer'): Promise<Page> {
	const page = await (await browser.newContext({ viewport: { width: 1440, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people[role].username);
	await page.getByLabel('Password').fill(people[role].password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return page;
}

const count = (page: Page, status: string) => page.getByTestId(`count-${status}`).locator('p').first();
const row = (page: Page, name: string) => page.locator(`tr[data-node="${name}"]`);

/** Confirms the plan on screen and waits on the run page until every task has ended. */
async function confirmAndWatch(page: Page, nodes: number) {
	await page.getByRole('button', { name: `Confirm and update ${nodes} node${nodes === 1 ? '' : 's'}` }).click();
	await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
	const summary = page.getByTestId('run-summary');
	await expect(summary.getByTestId('progress-label')).toHaveText(`${nodes}/${nodes} · 100%`, { timeout: 120_000 });
	return summary;
}

test('an operator sees the nodes a notified commit left behind, reviews the plan of Update All and watches it reach 100%', async ({
	browser
}) => {
	const good = {
		backend: await bed.addCommit('backend', { message: 'backend: health check', files: { 'healthcheck.sh': healthy } }),
		frontend: await bed.addCommit('frontend', {
			message: 'frontend: health check',
			files: { 'healthcheck.sh': healthy }
		})
	};
	const page = await signInBrowser(browser, 'operator');
	// Nodes other specs left behind count too; ours start up to date (no role has a commit yet).
	othersUpToDate = Number(await count(page, 'UP_TO_DATE').textContent()) - HOSTS;
	expect(othersUpToDate).toBeGreaterThanOrEqual(0);

	// The overview follows the stream: the notification shows without a reload.
	await page.evaluate(() => ((window as unknown as { marker: number }).marker = 1));
	expect(await notify(good.backend, 'backend', 'backend: health check')).toMatchObject({
		roles: [{ role: 'backend', new_commit: true, nodes_outdated: HOSTS }]
	});
	await notify(good.frontend, 'frontend', 'frontend: health check');
	await expect(count(page, 'OUTDATED')).toHaveText(String(HOSTS));
	await expect(count(page, 'UP_TO_DATE')).toHaveText(String(othersUpToDate));
	expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(1);
	await expect(row(page, 'cs-02')).toHaveAttribute('data-status', 'OUTDATED');
	await expect(row(page, 'cs-02').locator('[data-role="backend"]')).toHaveText(
		`backend — ← ${good.backend.slice(0, 7)}`
	);

	// Search and filters live in the URL and narrow the table in the database.
	await page.getByLabel('Search').fill('cs-0');
	await expect(page).toHaveURL(/[?&]q=cs-0/);
	await expect(page.locator('tr[data-node]')).toHaveCount(9);
	await page.getByLabel('Label').fill('tier=green');
	await page.getByLabel('Label').press('Enter');
	await expect(page).toHaveURL(/label=tier%3Dgreen/);
	await expect(page.locator('tr[data-node]')).toHaveCount(4);
	await page.getByRole('link', { name: 'Clear' }).click();
	// The filters are gone only once the cleared page has loaded: a status picked before would keep them.
	await expect(page).toHaveURL(/\/$/);
	await expect(page.getByLabel('Label')).toHaveValue('');
	await page.getByLabel('Status').selectOption('OUTDATED');
	await expect(page).toHaveURL(/status=OUTDATED/);
	await expect(page.locator('tr[data-node]')).toHaveCount(HOSTS);
	await page.screenshot({ path: `${shots}/fleet-outdated.png`, fullPage: true });

	await page.getByRole('button', { name: 'Update All' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog).toBeVisible();
	await expect(dialog.getByTestId('plan-summary')).toContainText(`${HOSTS} nodes · 2 roles`);
	await expect(dialog.locator('[data-target="backend"]')).toContainText(`→ ${good.backend.slice(0, 7)}`);
	await expect(dialog.locator('[data-target="frontend"]')).toContainText(`on ${HOSTS} nodes`);
	await expect(dialog.locator('[data-phase="0"]')).toHaveText(
		/Control plane first\s*1 node\s*a failure here stops the run/
	);
	await expect(dialog.locator('[data-phase="1"]')).toHaveText(new RegExp(`Fleet\\s*${HOSTS - 1} nodes\\s*$`));
	// Control plane first, then the rest by name.
	await expect(dialog.locator('tr[data-plan-node]').first()).toHaveAttribute('data-plan-node', 'cs-01');
	await expect(dialog.locator('tr[data-plan-node="cs-02"]')).toContainText(
		new RegExp(`backend — → ${good.backend.slice(0, 7)}\\s*frontend — → ${good.frontend.slice(0, 7)}`)
	);
	await page.screenshot({ path: `${shots}/plan-dialog.png` });
	// The run's failure limits are the operator's to set in the plan.
	await dialog.getByText('Failure limits').click();
	await dialog.getByLabel('Stop after this many failures').fill('3');
	await dialog.getByLabel('Stop at the first failure').check();

	const summary = await confirmAndWatch(page, HOSTS);
	const runId = page.url().split('/').at(-1)!;
	const [run] = await db`select options from runs where id = ${runId}`;
	expect(run!.options).toMatchObject({ maxFailures: 3, stopOnFirstFailure: true });
	await expect(page.getByTestId('count-succeeded')).toContainText(String(HOSTS));
	await expect(summary.locator('[data-state="succeeded"]').first()).toBeVisible();
	await page.screenshot({ path: `${shots}/run-100.png`, fullPage: true });

	// On the hosts themselves, and then on the overview.
	for (const host of bed.hosts) {
		expect(await bed.checkedOutCommit(host, 'backend')).toBe(good.backend);
		expect(await bed.checkedOutCommit(host, 'frontend')).toBe(good.frontend);
	}
	await page.goto('/');
	await expect(count(page, 'UP_TO_DATE')).toHaveText(String(othersUpToDate + HOSTS));
	await expect(row(page, 'cs-02').locator('[data-role="frontend"]')).toHaveText(
		`frontend ${good.frontend.slice(0, 7)}`
	);
});

test('a host whose health check fails is rolled back, its log shows why, and it is FAILED on the overview', async ({
	browser
}) => {
	const host = bed.hosts[names.indexOf(broken)]!;
	const previous = await bed.checkedOutCommit(host, 'frontend');
	const next = await bed.addCommit('frontend', breakable('ui-1'));
	await writeFile(join(host.root, 'etc/flotilla', 'break-ui-1'), '1');
	await notify(next, 'frontend', 'frontend: health check ui-1');

	const page = await signInBrowser(browser, 'operator');
	await expect(count(page, 'OUTDATED')).toHaveText(String(HOSTS));
	await expect(row(page, broken).locator('[data-role="frontend"]')).toHaveText(
		`frontend ${previous.slice(0, 7)} ← ${next.slice(0, 7)}`
	);
	await page.getByRole('button', { name: 'Update All' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog.getByTestId('plan-summary')).toContainText(`${HOSTS} nodes · 1 role`);
	await expect(dialog.getByTestId('plan-excluded')).toHaveCount(0);
	const summary = await confirmAndWatch(page, HOSTS);
	await expect(summary.locator('[data-state="failed"]').first()).toBeVisible();
	await expect(page.getByTestId('count-rolled_back')).toContainText('1');
	await expect(page.getByTestId('count-succeeded')).toContainText(String(HOSTS - 1));
	await expect(page.locator(`tr[data-task="${broken}"] [data-state]`).first()).toHaveAttribute(
		'data-state',
		'rolled_back'
	);
	// The rollback shows: a marker on its task only, and its steps with the undo and the verify labelled, in the
	// order they ran; first as the stream brought them, then as a reload reads them.
	const rollbackSteps = [
		...['prepare', 'fetch', 'preflight', 'switch', 'install', 'restart'].map((n) => `do:${n}:succeeded`),
		'do:verify:failed',
		'undo:switch:succeeded',
		'verify:verify:succeeded'
	];
	const runId = page.url().split('/').at(-1)!;
	for (const reload of [false, true]) {
		if (reload) await page.reload();
		await expect(page.getByTestId('rollback-marker')).toHaveCount(1);
		await expect(page.locator(`tr[data-task="${broken}"]`).getByTestId('rollback-marker')).toHaveText('rollback');
		await page.getByRole('button', { name: `Show the log of ${broken}` }).click();
		const steps = page.locator(`tr[data-log-for="${broken}"]`).getByTestId('task-steps').locator('li');
		await expect(steps).toHaveCount(rollbackSteps.length);
		expect(
			await steps.evaluateAll((items) =>
				items.map(
					(li) =>
						`${li.dataset.phase}:${li.dataset.step}:${li.querySelector('[data-state]')?.getAttribute('data-state')}`
				)
			)
		).toEqual(rollbackSteps);
		await expect(steps.nth(7)).toHaveText(/^undo\s*switch\s*succeeded/);
		await expect(steps.nth(6)).toContainText('frontend is unhealthy after 3 s');
	}
	// The API lists the same attempts, with their errors and times.
	const detail = await (await call(`/api/runs/${runId}`, { headers: operate() })).json();
	const apiTask = detail.tasks.find((t: { node_name: string }) => t.node_name === broken);
	expect(
		apiTask.steps.map((s: { phase: string; name: string; state: string }) => `${s.phase}:${s.name}:${s.state}`)
	).toEqual(rollbackSteps);
	expect(apiTask.steps[6].error).toMatch(/frontend is unhealthy/);
	for (const s of apiTask.steps) expect(s.ended_at >= s.started_at).toBe(true);

	const log = page.locator(`tr[data-log-for="${broken}"]`).getByTestId('live-log');
	await expect(log).toContainText('── verify');
	await expect(log).toContainText('frontend: not healthy yet');
	await expect(log).toContainText(`frontend: back on ${previous.slice(0, 12)}`);
	await expect(log).toContainText('frontend: restarted (systemctl restart frontend.service)');
	await expect(log).toContainText('frontend: healthy after the rollback (sh healthcheck.sh)');
	await page.locator(`tr[data-task="${broken}"]`).scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/failed-node-log.png`, fullPage: true });
	// Back on the commit it had, on the host itself.
	expect(await bed.checkedOutCommit(host, 'frontend')).toBe(previous);

	await page.getByRole('link', { name: 'Fleet Overview' }).click();
	await expect(row(page, broken)).toHaveAttribute('data-status', 'FAILED');
	await expect(count(page, 'FAILED')).toHaveText('1');
	await expect(count(page, 'UP_TO_DATE')).toHaveText(String(othersUpToDate + HOSTS - 1));
	await expect(row(page, broken).locator('[data-role="frontend"]')).toHaveText(
		`frontend ${previous.slice(0, 7)} ← ${next.slice(0, 7)} ✕ failed`
	);
	await page.screenshot({ path: `${shots}/fleet-failed.png`, fullPage: true });

	// The node page: its versions with the failure and the run it happened in, and the log of that task.
	await row(page, broken).getByRole('link', { name: broken }).click();
	await expect(page.getByRole('heading', { level: 1 })).toHaveText(broken);
	const frontend = page.getByTestId('versions-table').locator('tr[data-role="frontend"]');
	await expect(frontend.getByTestId('version-error')).toContainText(`${next.slice(0, 7)} failed`);
	await expect(frontend.getByTestId('version-error')).toContainText('unhealthy');
	await expect(frontend.getByRole('link', { name: /^run #\d+$/ })).toBeVisible();
	const task = page.getByTestId('node-task');
	await expect(task).toContainText('Last task');
	await expect(task.locator('[data-state="rolled_back"]')).toBeVisible();
	await expect(task.getByTestId('live-log')).toContainText(`frontend: back on ${previous.slice(0, 12)}`);
	await expect(page.getByTestId('node-tasks').locator('tr[data-run]')).toHaveCount(2);
	await page.screenshot({ path: `${shots}/node-page.png`, fullPage: true });

	// The Code Sync page: the role's latest commit, the failure, and the node still behind.
	await page.getByRole('link', { name: 'Code Sync' }).click();
	const card = page.locator('[data-role-card="frontend"]');
	await expect(card.getByTestId('latest-commit')).toContainText(`${next.slice(0, 7)} frontend: health check ui-1`);
	await expect(card.getByTestId('latest-commit')).toContainText('Ada Lovelace');
	await expect(card.getByTestId('behind-frontend')).toHaveText('1');
	await expect(card.getByTestId('failed-frontend')).toHaveText('1');
	await expect(page.locator('[data-role-card="backend"]').getByTestId('behind-backend')).toHaveText('0');
	await expect(page.getByTestId('behind-table').locator('tr[data-node]')).toHaveCount(1);
	await expect(page.getByTestId('behind-table').locator(`tr[data-node="${broken}"]`)).toContainText(
		`frontend ${previous.slice(0, 7)} ← ${next.slice(0, 7)}`
	);
	await page.screenshot({ path: `${shots}/code-sync.png`, fullPage: true });
});

test('a role that moves between plan and confirm is refused with the reason, and the fresh plan can be confirmed', async ({
	browser
}) => {
	const page = await signInBrowser(browser, 'operator');
	const first = await bed.addCommit('backend');
	await notify(first, 'backend', 'backend: version 5');
	await page.goto(`/nodes/${nodeIds.get('cs-02')}`);
	await expect(page.getByTestId('versions-table').locator('tr[data-role="backend"]')).toContainText('behind');
	await page.getByRole('button', { name: 'Update this node' }).click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog.locator('[data-target="backend"]')).toContainText(`→ ${first.slice(0, 7)}`);

	// Someone pushes again while the operator reads the plan.
	const second = await bed.addCommit('backend');
	await notify(second, 'backend', 'backend: version 6');
	const runsBefore = (await db`select count(*)::int as n from runs`)[0]!.n;
	await dialog.getByRole('button', { name: 'Confirm and update 1 node' }).click();
	await expect(dialog.getByRole('alert')).toContainText(`Role backend moved to ${second.slice(0, 12)}`);
	await expect(dialog.locator('[data-target="backend"]')).toContainText(`→ ${second.slice(0, 7)}`);
	expect((await db`select count(*)::int as n from runs`)[0]!.n).toBe(runsBefore);

	await confirmAndWatch(page, 1);
	await expect(page.getByTestId('count-succeeded')).toContainText('1');
	expect(await bed.checkedOutCommit(bed.hosts[1]!, 'backend')).toBe(second);
	await page.getByRole('link', { name: 'Fleet Overview' }).click();
	await expect(row(page, 'cs-02').locator('[data-role="backend"]')).toHaveText(`backend ${second.slice(0, 7)}`);
	await expect(row(page, 'cs-03').locator('[data-role="backend"]')).toContainText(`← ${second.slice(0, 7)}`);
});

test('an admin defines a role: bad fields are named next to them, nothing is saved until they are right', async ({
	browser
}) => {
	const page = await signInBrowser(browser, 'admin');
	await page.goto('/code-sync');
	await page.getByRole('link', { name: 'New role' }).click();
	const form = page.getByTestId('role-form');
	await form.getByLabel('Name').fill('ui-extra');
	await form.getByLabel('Git checkout on the node').fill('opt/extra');
	await form.getByLabel('Install command (one argument per line)').fill('make\n-rf\n\n');
	await form.getByLabel('Health check').selectOption('http');
	await form.getByLabel('Health URL (fetched on the node)').fill('ftp://127.0.0.1/');
	await form.getByLabel('Health timeout (seconds)').fill('0');
	await form.getByRole('button', { name: 'Create role' }).click();
	// The error printed right after the field.
	const errorOf = (id: string) => form.locator(`#${id} ~ .field-error`);
	await expect(errorOf('role-path')).toHaveText('must be an absolute path');
	await expect(errorOf('role-health-url')).toHaveText('must be an http:// or https:// URL');
	await expect(errorOf('role-timeout')).toHaveText('must be 1 to 600');
	// What was typed stays, so only the wrong fields need fixing.
	await expect(form.getByLabel('Install command (one argument per line)')).toHaveValue('make\n-rf\n\n');
	await page.screenshot({ path: `${shots}/role-form-errors.png`, fullPage: true });
	expect((await db`select count(*)::int as n from code_roles where name = 'ui-extra'`)[0]!.n).toBe(0);

	await form.getByLabel('Git checkout on the node').fill('/opt/extra');
	await form.getByLabel('Health check').selectOption('command');
	await form.getByLabel('Health command (one argument per line)').fill('sh\nhealthcheck.sh');
	await form.getByLabel('Health timeout (seconds)').fill('5');
	await form.getByRole('button', { name: 'Create role' }).click();
	await expect(page.getByText('Created role ui-extra.')).toBeVisible();
	const [saved] =
		await db`select install_command, health, health_timeout_seconds from code_roles where name = 'ui-extra'`;
	expect(saved).toEqual({
		install_command: ['make', '-rf'],
		health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
		health_timeout_seconds: 5
	});

	// Edit: the form opens with the role's values; a bad argument is named by its line.
	await page.locator('[data-role-card="ui-extra"]').getByRole('link', { name: 'Edit' }).click();
	await expect(page.getByRole('heading', { name: 'Edit role ui-extra' })).toBeVisible();
	await expect(form.getByLabel('Health command (one argument per line)')).toHaveValue('sh\nhealthcheck.sh');
	await form.getByLabel('Install command (one argument per line)').fill('-x');
	await form.getByRole('button', { name: 'Save role' }).click();
	await expect(errorOf('role-install')).toHaveText('the program must not start with -');
	await form.getByLabel('Install command (one argument per line)').fill('sh\ninstall.sh');
	await form.getByLabel('Order (lower updates first on a node)').fill('7');
	await form.getByRole('button', { name: 'Save role' }).click();
	await expect(page.getByText('Saved role ui-extra.')).toBeVisible();
	expect((await db`select sort_order, install_command from code_roles where name = 'ui-extra'`)[0]).toEqual({
		sort_order: 7,
		install_command: ['sh', 'install.sh']
	});

	// Signatures, pre-flight and quiesce: a wrong key line and a quiesce without its resume are named in place.
	await page.locator('[data-role-card="ui-extra"]').getByRole('link', { name: 'Edit' }).click();
	const signers = form.getByLabel(/^Allowed signers/);
	await signers.fill('deploy@example.com ssh-ed25519 not-a-key');
	await form.getByLabel(/^Readiness check/).fill('sh\nready.sh');
	await form.locator('input[name="snapshot"]').check();
	await form.getByLabel(/^Data paths to snapshot/).fill('/var/lib/extra');
	await form.getByLabel('Snapshots kept').fill('2');
	await form.getByLabel('Quiesce before the restart (one argument per line)').fill('sh\npause.sh');
	// A good OpenPGP key, then a private one pasted after it: the second is named.
	const pgpKeys = form.getByLabel(/^OpenPGP public keys/);
	await pgpKeys.fill(`${PGP}\n-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----`);
	await form.getByRole('button', { name: 'Save role' }).click();
	await expect(errorOf('role-allowed-signers')).toContainText('line 1: must be "principal key-type key [comment]"');
	await expect(errorOf('role-openpgp-keys')).toContainText('key 2: is a private key');
	await expect(errorOf('role-resume')).toHaveText('is required');
	await expect(form.getByLabel(/^Readiness check/)).toHaveValue('sh\nready.sh');
	await page.screenshot({ path: `${shots}/role-form-preflight-errors.png`, fullPage: true });
	const key = 'AAAAC3NzaC1lZDI1NTE5AAAAICAH1XympOydrhRY2E7DJKThvqgyKBnIcklsReC8jc11';
	await signers.fill(`deploy@example.com ssh-ed25519 ${key}`);
	await pgpKeys.fill(PGP);
	await form.getByLabel('Resume after the restart (one argument per line)').fill('sh\nresume.sh');
	await form.getByLabel('Quiesce deadline (seconds)').fill('15');
	await form.getByRole('button', { name: 'Save role' }).click();
	await expect(page.getByText('Saved role ui-extra.')).toBeVisible();
	expect(
		(await db`select signatures, readiness_check, snapshot, quiesce from code_roles where name = 'ui-extra'`)[0]
	).toEqual({
		signatures: { allowed_signers: [`deploy@example.com ssh-ed25519 ${key}`], openpgp_keys: [PGP] },
		readiness_check: { argv: ['sh', 'ready.sh'], deadline_seconds: 30 },
		snapshot: { data_paths: ['/var/lib/extra'], keep: 2, deadline_seconds: 600, restore_command: [] },
		quiesce: {
			quiesce: { argv: ['sh', 'pause.sh'], deadline_seconds: 15 },
			resume: { argv: ['sh', 'resume.sh'], deadline_seconds: 60 }
		}
	});
	await page.locator('[data-role-card="ui-extra"]').getByRole('link', { name: 'Edit' }).click();
	await expect(signers).toHaveValue(`deploy@example.com ssh-ed25519 ${key}`);
	await page.locator('#role-allowed-signers').scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/role-form-preflight.png`, fullPage: true });

	page.once('dialog', (d) => d.accept());
	await page.getByRole('button', { name: 'Delete role' }).click();
	await expect(page.getByText('Deleted role ui-extra.')).toBeVisible();
	await expect(page.locator('[data-role-card="ui-extra"]')).toHaveCount(0);
});

test('viewers see the fleet but no update controls; updates need an operator and a reviewed plan', async ({
	browser
}) => {
	const viewer = await signInBrowser(browser, 'viewer');
	await expect(row(viewer, 'cs-01')).toBeVisible();
	await expect(viewer.getByRole('button', { name: 'Update All' })).toHaveCount(0);
	await expect(viewer.getByRole('button', { name: 'Check all nodes' })).toHaveCount(0);
	await viewer.goto(`/nodes/${nodeIds.get('cs-01')}`);
	await expect(viewer.getByRole('heading', { level: 1 })).toHaveText('cs-01');
	await expect(viewer.getByRole('button', { name: 'Update this node' })).toHaveCount(0);
	await viewer.goto('/code-sync');
	await expect(viewer.locator('[data-role-card="backend"]')).toBeVisible();
	await expect(viewer.getByRole('button', { name: /^Update/ })).toHaveCount(0);
	await expect(viewer.getByRole('link', { name: 'Edit' })).toHaveCount(0);

	const runsBefore = (await db`select count(*)::int as n from runs`)[0]!.n;
	const targets = JSON.stringify(
		Object.fromEntries((await db`select name, latest_commit from code_roles`).map((r) => [r.name, r.latest_commit]))
	);
	expect((await postForm('/?/update', { expect: targets }, cookie(await signInAs('viewer')))).status).toBe(403);
	expect((await postForm('/code-sync?/saveRole', {}, cookie(await signInAs('operator')))).status).toBe(403);
	// An operator's form without the plan's commits starts nothing.
	const blind = await postForm('/?/update', {}, cookie(await signInAs('operator')));
	expect(blind.status).toBe(400);
	expect((await db`select count(*)::int as n from runs`)[0]!.n).toBe(runsBefore);
});

test('an operator undoes a wrong notification by making the previous commit the target again', async ({ browser }) => {
	const good = (await db`select latest_commit from code_roles where name = 'backend'`)[0]!.latest_commit as string;
	const behindBefore = (
		await db`select count(*)::int as n from node_code_versions where role = 'backend'
		and commit is distinct from ${good}`
	)[0]!.n;
	// A commit that exists nowhere: every backend node now looks behind, and Update All could never succeed.
	await notify('0badc0de', 'backend', 'not a commit of this repository');
	const page = await signInBrowser(browser, 'operator');
	await page.goto('/code-sync');
	const card = page.locator('[data-role-card="backend"]');
	await expect(card.getByTestId('latest-commit')).toContainText('0badc0d not a commit');
	await expect(card.getByTestId('behind-backend')).toHaveText(String(HOSTS));

	page.once('dialog', (d) => {
		expect(d.message()).toContain(`Make ${good.slice(0, 7)} the target of backend?`);
		void d.accept();
	});
	await card.getByRole('button', { name: `Make ${good.slice(0, 7)} the target of backend` }).click();
	await expect(page.getByText(`backend now targets ${good.slice(0, 12)}: ${behindBefore} node`)).toBeVisible();
	await expect(card.getByTestId('latest-commit')).toContainText(good.slice(0, 7));
	await expect(card.getByTestId('behind-backend')).toHaveText(String(behindBefore));
	await page.screenshot({ path: `${shots}/code-sync-pinned.png`, fullPage: true });
	const [audit] =
		await db`select actor_name, details from audit_log where action = 'code.pin' order by id desc limit 1`;
	expect(audit).toMatchObject({
		actor_name: people.operator.username,
		details: { commit: good, previous: '0badc0de' }
	});
});
