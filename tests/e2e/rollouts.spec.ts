import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Browser } from '@playwright/test';
import { expect, test } from './support/test';
import { hmacSignature } from '../../src/lib/server/releases/signing.ts';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { baseURL, call, cookie, people, signInAs } from './support/console';

/**
 * Rollouts in the browser on ten real sshd hosts (127.0.1.210–219) with a git role `app`: a signed release is
 * uploaded, an operator previews and starts a staged rollout, watches its stages progress live, pauses it and
 * resumes it; a release whose health check fails on two nodes pauses itself at its threshold and is rolled back
 * across the fleet; the hosts' checkouts say it really happened. Last, one of those hosts and a pull node (its
 * agent a process on this machine, docs/pull-agent.md) in one rollout.
 */

const HOSTS = 10;
const SECRET = 'e2e-release-signing-secret-0123';
const shots = 'test-results/screenshots';
let bed: Testbed;
const names = Array.from({ length: HOSTS }, (_, i) => `ro-${String(i + 1).padStart(2, '0')}`);
let sha = '';
const created = { nodes: [] as string[], credential: '' };

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
	bed = await startTestbed({ hosts: HOSTS, firstHost: 210, roles: ['app'] });
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await post('/api/credentials', { name: 'rollouts-ui-key', private_key: bed.clientPrivateKey });
	expect(cred.status).toBe(201);
	const credentialId = (await cred.json()).id;
	created.credential = credentialId;
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: names[i],
			host: host.address,
			credential_id: credentialId,
			host_key_fingerprint: host.hostKeyFingerprint,
			roles: ['app']
		});
		expect(res.status).toBe(201);
		created.nodes.push((await res.json()).id);
	}
	const role = await post('/api/roles', {
		name: 'app',
		path: '/opt/app',
		units: ['app.service'],
		install_command: ['sh', 'install.sh'],
		health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
		health_timeout_seconds: 3
	});
	expect(role.status).toBe(201);
	sha = await bed.addCommit('app', { message: 'release 2.0.0', files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' } });
	const manifest: Record<string, unknown> = {
		version: '2.0.0',
		sha,
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	const tampered = await post('/api/releases', {
		...manifest,
		signature: hmacSignature(manifest, 'not-the-secret-000')
	});
	expect(tampered.status).toBe(400);
	expect((await tampered.json()).error.fields.signature).toMatch(/does not match/);
	const res = await post('/api/releases', { ...manifest, signature: hmacSignature(manifest, SECRET) });
	expect(res.status).toBe(201);
	expect(await res.json()).toMatchObject({ version: '2.0.0', verified_by: 'hmac-sha256:shared-secret' });
});

test.afterAll(async () => {
	// Leave the shared console as the specs after this one expect it: no nodes, role or key of ours.
	const admin = await signInAs('admin');
	for (const id of created.nodes) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
	await call('/api/roles/app', { method: 'DELETE', headers: cookie(admin) });
	if (created.credential) {
		await call(`/api/credentials/${created.credential}`, { method: 'DELETE', headers: cookie(admin) });
	}
	await bed?.stop();
});

async function operatorPage(browser: Browser, width = 1440, timezoneId?: string) {
	const page = await (await browser.newContext({ viewport: { width, height: 900 }, timezoneId })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.operator.username);
	await page.getByLabel('Password').fill(people.operator.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	page.on('dialog', (d) => void d.accept());
	return page;
}

test('an operator previews a staged rollout, starts it, watches the stages, pauses and resumes it', async ({
	browser
}) => {
	test.setTimeout(180_000);
	const page = await operatorPage(browser);
	await page.goto('/releases');
	await expect(page.getByTestId('releases-table')).toContainText('2.0.0');

	await page.goto('/rollouts');
	await page.getByLabel('Strategy').selectOption('staged');
	await page.getByLabel('Bake per stage (minutes)').fill('0.1');
	await page.getByLabel('Target roles').fill('app');
	await page.getByRole('button', { name: 'Preview stages' }).click();
	const stages = page.getByTestId('preview-stage');
	await expect(stages).toHaveCount(3);
	await expect(stages.nth(0)).toContainText('Stage 1: 10% · 1 node · bake 6s');
	await expect(stages.nth(1)).toContainText('Stage 2: 50% · 4 nodes');
	await expect(stages.nth(2)).toContainText('Stage 3: 100% · 5 nodes');
	await page.screenshot({ path: `${shots}/rollout-preview.png`, fullPage: true });

	await page.getByRole('button', { name: 'Start rollout' }).click();
	await expect(page).toHaveURL(/\/rollouts\/[0-9a-f-]{36}$/);
	const stage = page.getByTestId('stage');
	// A node baking shows how long its bake has left (stages bake 6 s each).
	await expect(page.getByTestId('bake-left').first()).toHaveText(/^\(\d+s left\)$/, { timeout: 30_000 });
	// Live: stage 1 finishes and stage 2 starts without a reload by the test.
	await expect(stage.nth(0)).toHaveAttribute('data-state', 'done', { timeout: 60_000 });
	await expect(stage.nth(1)).toHaveAttribute('data-state', 'running', { timeout: 30_000 });
	await page.getByRole('button', { name: 'Pause' }).click();
	await expect(page.getByTestId('rollout-summary').locator('[data-state="paused"]')).toBeVisible();
	await expect(page.getByTestId('rollout-reason')).toHaveText(`Paused by ${people.operator.username}`);
	await page.screenshot({ path: `${shots}/rollout-paused.png`, fullPage: true });
	// Paused: the last stage never starts.
	await expect(stage.nth(2)).toHaveAttribute('data-state', 'pending');

	await page.getByRole('button', { name: 'Resume' }).click();
	await expect(page.getByTestId('rollout-summary').locator('[data-state="completed"]')).toBeVisible({
		timeout: 90_000
	});
	for (let k = 0; k < 3; k++) await expect(stage.nth(k)).toHaveAttribute('data-state', 'done');
	await expect(page.getByTestId('rollout-node')).toHaveCount(HOSTS);
	await expect(page.getByTestId('rollout-node').locator('[data-state="succeeded"]')).toHaveCount(HOSTS);
	await page.screenshot({ path: `${shots}/rollout-completed.png`, fullPage: true });
	for (const host of bed.hosts) expect(await bed.checkedOutCommit(host, 'app')).toBe(sha);
	const detail = page.url();
	// The node's page names the release its commit is.
	await page.getByRole('link', { name: 'ro-01' }).click();
	await expect(page.getByTestId('node-release')).toHaveText('release 2.0.0');
	await page.goto(detail);

	const narrow = await operatorPage(browser, 390);
	await narrow.goto(detail);
	await expect(narrow.getByTestId('rollout-summary')).toBeVisible();
	await narrow.screenshot({ path: `${shots}/rollout-390.png`, fullPage: true });
	const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
	expect(overflow).toBeLessThanOrEqual(0);
});

test('a rollout created to start later is scheduled: the form reads its start in the browser’s zone, nothing runs', async ({
	browser
}) => {
	const admin = await signInAs('admin');
	// A browser in another zone than the console's, two hours from now to the minute, written as its wall clock.
	const timeZone = 'America/New_York';
	const at = new Date(Math.ceil(Date.now() / 60_000) * 60_000 + 2 * 3_600_000);
	const wallClock = new Intl.DateTimeFormat('sv-SE', { timeZone, dateStyle: 'short', timeStyle: 'short' })
		.format(at)
		.replace(' ', 'T');
	const page = await operatorPage(browser, 1440, timeZone);
	await page.goto('/rollouts');
	await expect(page.locator('#start_at-hint')).toHaveText(`Time zone ${timeZone}; empty: at once`);
	await page.getByLabel('Release').selectOption({ label: `2.0.0 (stable, ${sha.slice(0, 7)})` });
	await page.getByLabel('Strategy').selectOption('staged');
	await page.getByLabel('Target roles').fill('app');
	await page.getByLabel('Minimum finished nodes').fill('0');
	await page.getByLabel('Start at').fill(wallClock);
	await page.getByRole('button', { name: 'Preview stages' }).click();
	// The API's schema judges the form: its error is next to the field it names.
	await expect(page.locator('#min_finished_nodes-error')).toHaveText('must be at least 1');
	await expect(page.getByLabel('Minimum finished nodes')).toHaveAttribute('aria-invalid', 'true');
	await page.getByLabel('Minimum finished nodes').fill('2');
	await page.getByRole('button', { name: 'Preview stages' }).click();
	await expect(page.getByTestId('preview-stage')).toHaveCount(3);
	await page.screenshot({ path: `${shots}/rollout-form-scheduled-1440.png`, fullPage: true });
	const narrow = await operatorPage(browser, 390, timeZone);
	await narrow.goto('/rollouts');
	await expect(narrow.locator('#start_at-hint')).toHaveText(`Time zone ${timeZone}; empty: at once`);
	await narrow.screenshot({ path: `${shots}/rollout-form-390.png`, fullPage: true });
	expect(await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);

	await page.getByRole('button', { name: 'Start rollout' }).click();
	await expect(page).toHaveURL(/\/rollouts\/[0-9a-f-]{36}$/);
	const id = page.url().split('/').at(-1)!;
	const summary = page.getByTestId('rollout-summary');
	await expect(summary.locator('[data-state="scheduled"]')).toBeVisible();
	await expect(page.getByTestId('rollout-start')).toHaveAttribute('datetime', at.toISOString());
	await expect(summary).toContainText(/Threshold\s*10% \(after 2 finished\)/);
	await page.screenshot({ path: `${shots}/rollout-scheduled.png`, fullPage: true });
	// The create action took the rollout's first driver turn before answering: it is still waiting, with no run.
	await expect(page.getByTestId('rollout-nodes')).toContainText('No node has started yet.');
	const detail = await call(`/api/rollouts/${id}`, { headers: cookie(admin) });
	const rollout = (await detail.json()) as { state: string; start_at: string; stages: { run_id: string | null }[] };
	expect(rollout).toMatchObject({ state: 'scheduled', start_at: at.toISOString() });
	expect(rollout.stages.map((s) => s.run_id)).toEqual([null, null, null]);

	// Cancelled, so that the tests after this one may target these nodes.
	await page.getByRole('button', { name: 'Cancel', exact: true }).click();
	await expect(summary.locator('[data-state="cancelled"]')).toBeVisible();
});

test('a rollout that respects maintenance windows shows a node outside its window as waiting for it', async ({
	browser
}) => {
	test.setTimeout(120_000);
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const hhmm = (hours: number) => new Date(Date.now() + hours * 3_600_000).toISOString().slice(11, 16);
	const window = await post('/api/updates/system/windows', {
		scope: 'node',
		target: names[0],
		start: hhmm(6),
		end: hhmm(7),
		time_zone: 'UTC',
		days: ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday']
	});
	expect(window.status).toBe(201);
	const windowId = (await window.json()).id;
	try {
		const next = await bed.addCommit('app', {
			message: 'release 2.1.0',
			files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' }
		});
		const manifest: Record<string, unknown> = {
			version: '2.1.0',
			sha: next,
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-06-02T00:00:00Z'
		};
		const release = await post('/api/releases', { ...manifest, signature: hmacSignature(manifest, SECRET) });
		expect(release.status).toBe(201);

		const page = await operatorPage(browser);
		await page.goto('/rollouts');
		await page.getByLabel('Release').selectOption({ label: `2.1.0 (stable, ${next.slice(0, 7)})` });
		await page.getByLabel('Strategy').selectOption('immediate');
		await page.getByLabel('Target nodes').fill(`${names[0]}, ${names[1]}`);
		await page.getByLabel('Update each node only inside its maintenance window').check();
		await page.getByRole('button', { name: 'Preview stages' }).click();
		await page.getByRole('button', { name: 'Start rollout' }).click();
		await expect(page).toHaveURL(/\/rollouts\/[0-9a-f-]{36}$/);
		const row = (name: string) => page.locator(`[data-testid="rollout-node"][data-node="${name}"]`);
		await expect(row(names[1]!).locator('[data-state="succeeded"]')).toBeVisible({ timeout: 60_000 });
		await expect(row(names[0]!).locator('[data-state="waiting_window"]')).toBeVisible({ timeout: 30_000 });
		await expect(row(names[0]!).getByTestId('window-opens')).toContainText('waiting for its maintenance window, opens');
		await expect(page.getByTestId('rollout-summary')).toContainText('Maintenance windows respected');
		await page.screenshot({ path: `${shots}/rollout-waiting-window.png`, fullPage: true });
		expect(await bed.checkedOutCommit(bed.hosts[0]!, 'app')).toBe(sha);
		expect(await bed.checkedOutCommit(bed.hosts[1]!, 'app')).toBe(next);
		const detail = page.url();
		// The Fleet Overview: ro-02 runs 2.1.0; ro-01 runs 2.0.0 and the rollout is moving it.
		await page.goto('/');
		const fleetRow = (name: string) => page.locator(`tr[data-node="${name}"]`).getByTestId('node-release');
		await expect(fleetRow(names[1]!)).toHaveText('2.1.0');
		await expect(fleetRow(names[0]!).getByRole('link', { name: '2.0.0' })).toBeVisible();
		await expect(fleetRow(names[0]!).getByTestId('node-rollout')).toHaveText(/→ 2\.1\.0 \(rollout #\d+\)/);
		await page.screenshot({ path: `${shots}/fleet-releases.png`, fullPage: true });
		await page.goto(detail);

		await page.getByRole('button', { name: 'Cancel', exact: true }).click();
		await expect(page.getByTestId('rollout-summary').locator('[data-state="cancelled"]')).toBeVisible();
		await expect(row(names[0]!).locator('[data-state="cancelled"]')).toBeVisible({ timeout: 30_000 });
		expect(await bed.checkedOutCommit(bed.hosts[0]!, 'app')).toBe(sha);
	} finally {
		await call(`/api/updates/system/windows/${windowId}`, { method: 'DELETE', headers: cookie(admin) });
	}
});

test('a release failing its health check on two nodes pauses at the threshold; a fleet rollback takes it back', async ({
	browser
}) => {
	test.setTimeout(180_000);
	const admin = await signInAs('admin');
	const hostOf = new Map(names.map((n, i) => [n, bed.hosts[i]!]));
	const marker = (name: string) => join(hostOf.get(name)!.root, 'etc/flotilla/break-e2e');
	const broken: string[] = [];
	try {
		const next = await bed.addCommit('app', {
			message: 'release 2.2.0',
			files: { 'healthcheck.sh': '#!/bin/sh\ntest ! -e /etc/flotilla/break-e2e\n' }
		});
		const manifest: Record<string, unknown> = {
			version: '2.2.0',
			sha: next,
			channel: 'stable',
			migrations_required: true,
			breaking_changes: 'A health check that some nodes fail',
			released_at: '2026-06-03T00:00:00Z'
		};
		const res = await call('/api/releases', {
			method: 'POST',
			headers: cookie(admin),
			json: { ...manifest, signature: hmacSignature(manifest, SECRET) }
		});
		expect(res.status).toBe(201);
		const before = new Map<string, string>();
		for (const [name, host] of hostOf) before.set(name, await bed.checkedOutCommit(host, 'app'));

		const page = await operatorPage(browser);
		// The Releases page, and which nodes run a release: those whose checkout is its commit (after the tests
		// above, every node but ro-02, which moved to 2.1.0). Those tests also gave every node a healthy release
		// the console deployed, which a failed node goes back to.
		await page.goto('/releases');
		const releaseRow = (commit: string) =>
			page.getByTestId('releases-table').locator('tbody tr', { hasText: commit.slice(0, 12) });
		await expect(releaseRow(next)).toContainText('2.2.0');
		await expect(releaseRow(next)).toContainText('hmac-sha256:shared-secret');
		await page.screenshot({ path: `${shots}/releases.png`, fullPage: true });
		await releaseRow(sha).getByRole('link', { name: '2.0.0' }).click();
		const onIt = names.filter((n) => before.get(n) === sha);
		const nodeLinks = page.getByTestId('release-nodes').getByRole('link');
		await expect(nodeLinks).toHaveCount(onIt.length);
		expect((await nodeLinks.allTextContents()).sort()).toEqual(onIt);
		await page.screenshot({ path: `${shots}/release-detail.png`, fullPage: true });

		await page.goto('/rollouts');
		await page.getByLabel('Release').selectOption({ label: `2.2.0 (stable, ${next.slice(0, 7)})` });
		await page.getByLabel('Strategy').selectOption('staged');
		await page.getByLabel('Bake per stage (minutes)').fill('0.05');
		await page.getByLabel('Target roles').fill('app');
		await page.getByRole('button', { name: 'Preview stages' }).click();
		const preview = page.getByTestId('preview-stage');
		await expect(preview.nth(1)).toContainText('Stage 2: 50% · 4 nodes');
		const inStage = async (k: number) => ((await preview.nth(k).locator('p').textContent()) ?? '').trim().split(', ');
		const [second, third] = [await inStage(1), await inStage(2)];
		// Two of the four nodes of stage 2 fail the release's health check.
		broken.push(second[0]!, second[1]!);
		for (const name of broken) await writeFile(marker(name), '1');

		await page.getByRole('button', { name: 'Start rollout' }).click();
		await expect(page).toHaveURL(/\/rollouts\/[0-9a-f-]{36}$/);
		const summary = page.getByTestId('rollout-summary');
		await expect(summary.locator('[data-state="paused"]')).toBeVisible({ timeout: 90_000 });
		await expect(page.getByTestId('rollout-reason')).toHaveText(
			/^stage 2 of 3 \(50%\): [12] of [34] finished nodes failed \(\d+% > the 10% threshold\)$/
		);
		const stage = page.getByTestId('stage');
		// Paused, not aborted: the stage's four nodes (all started at once) finish, the last stage never starts.
		await expect(stage.nth(1)).toContainText('2 ok · 2 failed · 0 running · 0 queued', { timeout: 30_000 });
		await expect(stage.nth(1).getByTestId('failure-rate')).toHaveText('50% / 10%');
		// Every node of the stage finished and the rollout is paused: so is the stage (its badge), not "running".
		await expect(stage.nth(1).locator('[data-state="paused"]')).toBeVisible();
		await expect(stage.nth(1).locator('[data-state="running"]')).toHaveCount(0);
		await expect(stage.nth(2)).toHaveAttribute('data-state', 'pending');
		for (const name of broken) {
			const row = page.locator(`[data-testid="rollout-node"][data-node="${name}"]`);
			await expect(row.locator('[data-state="rolled_back"]')).toBeVisible();
			await expect(row).toContainText(/verify: app is unhealthy/);
		}
		await page.screenshot({ path: `${shots}/rollout-threshold-paused.png`, fullPage: true });
		for (const name of [...broken, ...third]) {
			expect(await bed.checkedOutCommit(hostOf.get(name)!, 'app'), name).toBe(before.get(name));
		}

		await page.getByRole('button', { name: 'Fleet rollback' }).click();
		await expect(summary.locator('[data-state="rolled_back"]')).toBeVisible({ timeout: 90_000 });
		await page.screenshot({ path: `${shots}/rollout-rolled-back.png`, fullPage: true });
		for (const [name, host] of hostOf) expect(await bed.checkedOutCommit(host, 'app'), name).toBe(before.get(name));
	} finally {
		for (const name of broken) await rm(marker(name), { force: true });
	}
});

test('an operator watches a rollout to an SSH node and a pull node whose agent runs here, both succeed', async ({
	browser
}) => {
	test.setTimeout(120_000);
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-e2e-mixed-'));
	const steps = join(dir, 'steps.log');
	const gate = join(dir, 'smoke-may-run');
	// A node the console never reaches over SSH (TEST-NET address), so no host key is pinned for it: its agent
	// takes its updates, and the rollout takes it all the same.
	const node = await post('/api/nodes', {
		name: 'ro-pull',
		host: '192.0.2.21',
		credential_id: created.credential,
		roles: ['app']
	});
	expect(node.status, await node.clone().text()).toBe(201);
	const pullId = ((await node.json()) as { id: string }).id;
	created.nodes.push(pullId);
	const enrolled = await post(`/api/nodes/${pullId}/agent`, {});
	expect(enrolled.status).toBe(201);
	const { secret } = (await enrolled.json()) as { secret: string };
	const step = (s: string) => `echo "${s} $FLOTILLA_RELEASE $FLOTILLA_COMMIT" >> ${steps}`;
	const agent = spawn('sh', [resolve('agent/flotilla-agent')], {
		detached: true,
		stdio: ['ignore', 'ignore', 'ignore'],
		env: {
			PATH: process.env.PATH,
			FLOTILLA_URL: baseURL,
			FLOTILLA_NODE_ID: pullId,
			AGENT_SECRET: secret,
			AGENT_STATE_FILE: join(dir, 'state'),
			AGENT_POLL_SECONDS: '1',
			UPDATE_BACKUP_CMD: step('backup'),
			UPDATE_PULL_CMD: step('pull'),
			UPDATE_MIGRATE_CMD: step('migrate'),
			// Holds until the test lets it go: the page is seen on this step, then seen to move on by itself.
			UPDATE_SMOKE_CMD: `while [ ! -e ${gate} ]; do sleep 0.2; done; ${step('smoke')}`,
			UPDATE_SWITCH_CMD: step('switch'),
			UPDATE_HEALTH_CMD: step('health'),
			UPDATE_ROLLBACK_CMD: step('rollback')
		}
	});
	try {
		const ssh = names[9]!;
		const next = await bed.addCommit('app', {
			message: 'release 2.3.0',
			files: { 'healthcheck.sh': '#!/bin/sh\nexit 0\n' }
		});
		const manifest: Record<string, unknown> = {
			version: '2.3.0',
			sha: next,
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-06-04T00:00:00Z'
		};
		expect((await post('/api/releases', { ...manifest, signature: hmacSignature(manifest, SECRET) })).status).toBe(201);

		const page = await operatorPage(browser);
		await page.goto('/rollouts');
		await page.getByLabel('Release').selectOption({ label: `2.3.0 (stable, ${next.slice(0, 7)})` });
		await page.getByLabel('Strategy').selectOption('immediate');
		await page.getByLabel('Target nodes').fill(`${ssh}, ro-pull`);
		await page.getByRole('button', { name: 'Preview stages' }).click();
		await expect(page.getByTestId('preview-stage')).toHaveCount(1);
		await expect(page.getByTestId('preview-stage').nth(0)).toContainText('2 nodes');
		await page.getByRole('button', { name: 'Start rollout' }).click();
		await expect(page).toHaveURL(/\/rollouts\/[0-9a-f-]{36}$/);
		await expect(page.getByTestId('rollout-summary')).toContainText('● live');
		const row = (name: string) => page.locator(`[data-testid="rollout-node"][data-node="${name}"]`);

		// The agent took the job and waits on its smoke command; the SSH node finishes meanwhile.
		await expect(row('ro-pull').locator('[data-state="running"]')).toBeVisible({ timeout: 30_000 });
		await expect(row('ro-pull').getByTestId('node-pull')).toHaveText('pull agent');
		await expect(row('ro-pull').getByTestId('node-steps')).toHaveText(
			'window → agent → backup → pull → migrate → smoke',
			{
				timeout: 30_000
			}
		);
		await expect(row(ssh).locator('[data-state="succeeded"]')).toBeVisible({ timeout: 60_000 });
		await expect(row(ssh).getByTestId('node-pull')).toHaveCount(0);
		await expect(row(ssh).getByTestId('node-steps')).toHaveText(
			'window → prepare → backup → fetch → preflight → migrate → smoke → switch → install → restart → verify → bake → record'
		);
		await page.screenshot({ path: `${shots}/rollout-mixed-running-1440.png`, fullPage: true });

		// Let the smoke command run: the page moves on by itself (server-sent events, no reload by the test).
		await writeFile(gate, '');
		await expect(row('ro-pull').locator('[data-state="succeeded"]')).toBeVisible({ timeout: 60_000 });
		await expect(row('ro-pull').getByTestId('node-steps')).toHaveText(
			'window → agent → backup → pull → migrate → smoke → switch → health'
		);
		await expect(page.getByTestId('rollout-summary').locator('[data-state="completed"]')).toBeVisible({
			timeout: 30_000
		});
		await page.screenshot({ path: `${shots}/rollout-mixed-1440.png`, fullPage: true });
		// The start and the periodic turn both look at a stage without a run at first: the stage has one run.
		const number = (await page.getByRole('heading', { level: 1 }).textContent())!.trim().replace('Rollout ', '');
		const runs = await call('/api/runs?kind=rollout-stage&limit=500', { headers: cookie(admin) });
		const { items } = (await runs.json()) as { items: { title: string }[] };
		expect(items.filter((x) => x.title.startsWith(`Rollout ${number}: 2.3.0`))).toHaveLength(1);
		expect(await bed.checkedOutCommit(bed.hosts[9]!, 'app')).toBe(next);
		expect((await readFile(steps, 'utf8')).trim().split('\n')).toEqual(
			['backup', 'pull', 'migrate', 'smoke', 'switch', 'health'].map((s) => `${s} 2.3.0 ${next}`)
		);

		const narrow = await operatorPage(browser, 390);
		await narrow.goto(page.url());
		await expect(narrow.getByTestId('rollout-node')).toHaveCount(2);
		await narrow.screenshot({ path: `${shots}/rollout-mixed-390.png`, fullPage: true });
		const overflow = await narrow.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
		expect(overflow).toBeLessThanOrEqual(0);
	} finally {
		if (agent.exitCode === null && agent.signalCode === null) process.kill(-agent.pid!, 'SIGKILL');
		await rm(dir, { recursive: true, force: true });
	}
});
