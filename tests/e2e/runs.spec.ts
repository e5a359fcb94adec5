import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { call, consoleDatabase, cookie, people, postForm, signInAs } from './support/console';

/** Real sshd hosts, registered with their host keys pinned, so that "Check all nodes" has a fleet to check. */
let bed: Testbed;
const db = consoleDatabase();
const nodeIds: string[] = [];

test.beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 110 });
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const cred = await (await post('/api/credentials', { name: 'runs-key', private_key: bed.clientPrivateKey })).json();
	for (const [i, host] of bed.hosts.entries()) {
		const res = await post('/api/nodes', {
			name: `runs-0${i + 1}`,
			host: host.address,
			credential_id: cred.id,
			host_key_fingerprint: host.hostKeyFingerprint
		});
		expect(res.status).toBe(201);
		nodeIds.push((await res.json()).id);
	}
	// Nodes other specs left with a pinned key would join the check; only ours must be there to reach 100%.
	await db`update nodes set host_key_status = 'unknown' where host_key_status = 'pinned' and not (id = any(${nodeIds}))`;
});
test.afterAll(async () => {
	await bed?.stop();
	await db.end();
});

async function signInBrowser(page: Page, role: 'admin' | 'viewer') {
	await page.goto('/login');
	await page.getByLabel('Username').fill(people[role].username);
	await page.getByLabel('Password').fill(people[role].password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
}

test('an admin checks all nodes and watches the run finish live, with each task’s log', async ({ page }) => {
	await signInBrowser(page, 'admin');
	await page.getByRole('button', { name: 'Check all nodes' }).click();
	await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
	await expect(page.getByRole('heading', { level: 1 })).toHaveText(/^Run #\d+$/);

	// Nothing reloads the page from here on: a marker on the window would vanish with a navigation.
	await page.evaluate(() => ((window as unknown as { marker: number }).marker = 1));
	const summary = page.getByTestId('run-summary');
	await expect(summary.getByTestId('progress-label')).toHaveText('3/3 · 100%', { timeout: 30_000 });
	await expect(summary.locator('[data-state="succeeded"]').first()).toBeVisible();
	await expect(page.getByTestId('count-succeeded')).toContainText('3');
	const rows = page.locator('tr[data-task]');
	await expect(rows).toHaveCount(3);
	for (const row of await rows.all())
		await expect(row.locator('[data-state]').first()).toHaveAttribute('data-state', 'succeeded');
	expect(await page.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(1);
	// A finished run offers no Cancel or Pause.
	await expect(page.getByRole('button', { name: 'Cancel', exact: true })).toHaveCount(0);

	await page.getByRole('button', { name: 'Show the log of runs-01' }).click();
	const log = page.locator('tr[data-log-for="runs-01"]').getByTestId('live-log');
	await expect(log).toBeVisible();
	await expect(log.locator('p').nth(1)).toBeVisible();
	expect((await log.innerText()).length).toBeGreaterThan(20);
	await page.screenshot({ path: 'test-results/screenshots/run-page.png', fullPage: true });

	// The whole log as text: every node's lines, named by node and step.
	const downloading = page.waitForEvent('download');
	await page.getByRole('link', { name: 'Download log' }).click();
	const download = await downloading;
	expect(download.suggestedFilename()).toMatch(/^run-\d+\.log$/);
	const text = await readFile((await download.path())!, 'utf8');
	for (const node of ['runs-01', 'runs-02', 'runs-03']) expect(text).toMatch(new RegExp(`^${node} \\S+ .*Linux`, 'm'));

	await page.getByRole('link', { name: 'Runs', exact: true }).click();
	await expect(page.getByTestId('runs-table')).toContainText('Check all nodes');
	await page.screenshot({ path: 'test-results/screenshots/runs-list.png', fullPage: true });
});

test('a run that starts and ends while the runs page opens its live stream still shows there', async ({ page }) => {
	await signInBrowser(page, 'admin');
	const admin = await signInAs('admin');
	// The page's data is loaded; its event stream is held back until a whole run has started and ended, so that
	// not one of the run's events reaches the page live: what it shows must come from a reload once the stream is open.
	let ran: { state: string; number: number } | undefined;
	await page.route('**/api/events', async (route) => {
		if (!ran) {
			const started = await postForm('/?/checkAll', {}, cookie(admin));
			expect(started.status).toBe(303);
			const id = /\/runs\/([0-9a-f-]{36})$/.exec(started.headers.get('location') ?? '')![1]!;
			const read = async () => (ran = await (await call(`/api/runs/${id}`, { headers: cookie(admin) })).json());
			await expect.poll(async () => (await read()).state, { timeout: 30_000 }).toBe('succeeded');
		}
		await route.continue();
	});
	await page.goto('/runs');
	await expect.poll(() => ran?.state, { timeout: 40_000 }).toBe('succeeded');
	const row = page.locator(`tr[data-run="${ran!.number}"]`);
	await expect(row.locator('[data-state]').first()).toHaveAttribute('data-state', 'succeeded');
});

test('each live page keeps one event stream across its reloads', async ({ page }) => {
	await signInBrowser(page, 'admin');
	const streams: string[] = [];
	page.on('request', (r) => {
		if (new URL(r.url()).pathname === '/api/events') streams.push(r.url());
	});
	const live = ['/', '/code-sync', '/system-updates', '/certificates', '/rollouts', '/runs', '/settings/ssh-keys'];
	for (const path of [...live, `/nodes/${nodeIds[0]}`]) {
		streams.length = 0;
		// The first data request after a page is served is the reload its stream asks for once it opens.
		const reloaded = page.waitForResponse((r) => new URL(r.url()).pathname.endsWith('/__data.json'));
		await page.goto(path);
		await reloaded;
		// A page that subscribed again on each reload would open a second stream right after it, which reloads
		// the page again when it opens, and so on: the browser never rests.
		await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 1_000)));
		expect(streams, path).toHaveLength(1);
	}
});

test('a viewer sees a run but no controls, and the console refuses their cancel', async ({ browser }) => {
	// A paused run is one that can still be cancelled: the admin's controls show, the viewer's do not.
	const admin = await signInAs('admin');
	const created = await call('/api/runs', {
		method: 'POST',
		headers: cookie(admin),
		json: { kind: 'check', nodes: nodeIds, options: { concurrency: 1 } }
	});
	expect(created.status).toBe(202);
	const { run_id } = await created.json();
	const paused = await call(`/api/runs/${run_id}/pause`, { method: 'POST', headers: cookie(admin) });
	expect(paused.status).toBe(200);

	const viewerPage = await (await browser.newContext()).newPage();
	await signInBrowser(viewerPage, 'viewer');
	await viewerPage.goto(`/runs/${run_id}`);
	await expect(viewerPage.getByTestId('run-summary').locator('[data-state="paused"]')).toBeVisible();
	await expect(viewerPage.getByRole('button', { name: 'Cancel', exact: true })).toHaveCount(0);
	await expect(viewerPage.getByRole('button', { name: 'Resume' })).toHaveCount(0);
	const refused = await postForm(`/runs/${run_id}?/cancel`, {}, cookie(await signInAs('viewer')));
	expect(refused.status).toBe(403);

	const adminPage = await (await browser.newContext()).newPage();
	await signInBrowser(adminPage, 'admin');
	await adminPage.goto(`/runs/${run_id}`);
	await expect(adminPage.getByRole('button', { name: 'Resume' })).toBeVisible();
	let question = '';
	adminPage.once('dialog', (d) => {
		question = d.message();
		void d.accept();
	});
	await adminPage.getByRole('button', { name: 'Cancel', exact: true }).click();
	// A check only looks at its nodes: nothing of it is rolled back, and the question does not say otherwise.
	expect(question).toMatch(/^Cancel run #\d+\? Running tasks are stopped\.$/);
	await expect(adminPage.getByTestId('run-summary').locator('[data-state="cancelled"]').first()).toBeVisible();
	await expect(adminPage.getByTestId('run-reason')).toHaveText('Cancelled by admin');
	await expect(adminPage.getByRole('button', { name: 'Cancel', exact: true })).toHaveCount(0);
	// The counts filter the table: only the cancelled tasks, then all again.
	const cancelled = Number(await adminPage.getByTestId('count-cancelled').locator('.tabular-nums').innerText());
	await adminPage.getByTestId('count-cancelled').getByRole('button').click();
	await expect(adminPage.getByTestId('task-filter')).toHaveText('Showing the cancelled tasks only.');
	await expect(adminPage.locator('tr[data-task]')).toHaveCount(cancelled);
	for (const row of await adminPage.locator('tr[data-task]').all())
		await expect(row.locator('[data-state]').first()).toHaveAttribute('data-state', 'cancelled');
	await adminPage.getByRole('button', { name: 'Show all' }).click();
	await expect(adminPage.locator('tr[data-task]')).toHaveCount(3);
	// A task the pause kept from starting never ran: its log says so instead of waiting for output.
	const [unstarted] = await db`select node_name from tasks where run_id = ${run_id} and started_at is null limit 1`;
	expect(unstarted).toBeDefined();
	await adminPage.getByRole('button', { name: `Show the log of ${unstarted!.node_name}` }).click();
	await expect(adminPage.locator(`tr[data-log-for="${unstarted!.node_name}"]`).getByTestId('live-log')).toHaveText(
		'No output.'
	);
	const state = (await db`select state from runs where id = ${run_id}`)[0]!.state;
	expect(state).toBe('cancelled');
});

test('a run mid-way shows running tasks, a partial progress bar and live output', async ({ page }) => {
	// `uname` takes eight seconds on two of the three hosts (the check's facts step runs it), printing
	// progress on stderr as it goes: a per-host stand-in first on sshd's PATH, which the testbed allows.
	const slow = bed.hosts.slice(1);
	const standIns = slow.map((h) => join(h.root, 'opt/flotilla-testbed/bin/uname'));
	for (const path of standIns) {
		await writeFile(
			path,
			'#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8; do echo "collecting facts ($i/8)" >&2; sleep 1; done\nexec /bin/uname "$@"\n'
		);
		await chmod(path, 0o755);
	}
	try {
		await signInBrowser(page, 'admin');
		await page.getByRole('button', { name: 'Check all nodes' }).click();
		await expect(page).toHaveURL(/\/runs\/[0-9a-f-]{36}$/);
		const summary = page.getByTestId('run-summary');
		// The fast host has ended, the slow ones have not.
		await expect(summary.getByTestId('progress-label')).toHaveText('1/3 · 33%');
		const label = await summary.getByTestId('progress-label').innerText();
		const percent = Number(/· (\d+)%$/.exec(label)?.[1]);
		expect(percent).toBeGreaterThan(0);
		expect(percent).toBeLessThan(100);
		await expect(summary.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '1');
		await expect(summary.locator('[data-state]').first()).toHaveAttribute('data-state', 'running');
		await expect(page.getByTestId('count-running')).toContainText('2');
		const done = page.locator('tr[data-task="runs-01"]');
		await expect(done.locator('[data-state]').first()).toHaveAttribute('data-state', 'succeeded');
		// An ended task has no current step, live as after a reload.
		await expect(done.locator('td').nth(3)).toHaveText('—');
		for (const name of ['runs-02', 'runs-03']) {
			const row = page.locator(`tr[data-task="${name}"]`);
			await expect(row.locator('[data-state]').first()).toHaveAttribute('data-state', 'running');
			await expect(row.getByRole('cell', { name: 'facts', exact: true })).toBeVisible();
		}
		await page.getByRole('button', { name: 'Show the log of runs-02' }).click();
		const log = page.locator('tr[data-log-for="runs-02"]').getByTestId('live-log');
		await expect(log).toContainText('collecting facts (2/8)');
		// Still mid-way when the picture is taken.
		await expect(summary.getByTestId('progress-label')).toHaveText('1/3 · 33%');
		await page.screenshot({ path: 'test-results/screenshots/run-page-live.png', fullPage: true });
		await expect(summary.getByTestId('progress-label')).toHaveText('1/3 · 33%');

		// And the same page, without a reload, reaches the end.
		await expect(summary.getByTestId('progress-label')).toHaveText('3/3 · 100%', { timeout: 30_000 });
		await expect(log).toContainText('collecting facts (8/8)');
		await expect(summary.locator('[data-state]').first()).toHaveAttribute('data-state', 'succeeded');
	} finally {
		for (const path of standIns) await rm(path, { force: true });
	}
});
