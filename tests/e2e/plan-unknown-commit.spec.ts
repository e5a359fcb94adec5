import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { baseURL, call, consoleDatabase, cookie, signInAs } from './support/console';

/**
 * An unknown commit is flagged before anyone confirms an update (issue 19; docs/code-sync.md, "Update All"): a
 * `push` role's target that its console checkout does not hold is marked in the plan dialog, and the warning goes
 * once the role is pinned back to a commit the checkout has; so is a `git` role's target that a node's last fetch
 * did not bring (what that fetch recorded is written here: tests/integration/code-sync-unknown-git-target.spec.ts
 * fetches for real). No testbed host: the node points at 127.0.1.96, where nothing listens, and nothing is
 * confirmed, so nothing connects to it.
 */

const run = promisify(execFile);
const shots = 'test-results/screenshots';
const stamp = Date.now() % 1_000_000;
const role = `uc${stamp}`;
const gitRole = `ug${stamp}`;
const db = consoleDatabase();
let admin = '';
let dir = '';
let nodeId = '';
let known = '';
const bogus = `c0ffee${stamp}`.padEnd(40, '1');

const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });

test.describe.configure({ mode: 'default' });

test.beforeAll(async () => {
	admin = await signInAs('admin');
	dir = await mkdtemp(join(tmpdir(), 'flotilla-uc-'));
	// The console's checkout of the role: a real repository with one commit.
	const git = (...args: string[]) =>
		run('git', ['-C', dir, '-c', 'user.name=Test', '-c', 'user.email=t@example.com', ...args]);
	await git('init', '--quiet');
	await git('commit', '--quiet', '--allow-empty', '-m', 'first');
	known = (await git('rev-parse', 'HEAD')).stdout.trim();
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const cred = await post('/api/credentials', {
		name: `${role}-key`,
		private_key: await readFile(join(dir, 'key'), 'utf8')
	});
	expect(cred.status).toBe(201);
	const created = await post('/api/roles', {
		name: role,
		path: `/opt/${role}`,
		units: [`${role}.service`],
		method: 'push',
		source_repo: dir
	});
	expect(created.status, await created.clone().text()).toBe(201);
	const createdGit = await post('/api/roles', {
		name: gitRole,
		path: `/opt/${gitRole}`,
		units: [`${gitRole}.service`]
	});
	expect(createdGit.status, await createdGit.clone().text()).toBe(201);
	const node = await post('/api/nodes', {
		name: `${role}-node`,
		host: '127.0.1.96',
		credential_id: (await cred.json()).id,
		host_key_fingerprint: 'SHA256:' + 'A'.repeat(43),
		roles: [role, gitRole]
	});
	expect(node.status, await node.clone().text()).toBe(201);
	nodeId = (await node.json()).id;
});

test.afterAll(async () => {
	if (nodeId) await call(`/api/nodes/${nodeId}`, { method: 'DELETE', headers: cookie(admin) });
	await call(`/api/roles/${gitRole}`, { method: 'DELETE', headers: cookie(admin) });
	await rm(dir, { recursive: true, force: true });
	await db.end();
});

test('the plan dialog marks a push role’s commit missing from the console’s checkout, before confirming', async ({
	page
}) => {
	const [name, ...value] = admin.split(';')[0]!.split('=');
	await page.context().addCookies([{ name: name!, value: value.join('='), url: baseURL }]);
	await page.setViewportSize({ width: 1440, height: 900 });
	const notify = async (commit: string) =>
		expect((await post('/api/code-source/notify', { commit, changed_roles: [role] })).status).toBe(200);
	const openPlan = async () => {
		await page.goto(`/nodes/${nodeId}`);
		await page.getByRole('button', { name: 'Update this node' }).click();
		const dialog = page.getByTestId('plan-dialog');
		await expect(dialog.locator(`[data-target="${role}"]`)).toBeVisible();
		return dialog;
	};

	// A commit the checkout has: no mark, no warning about it.
	await notify(known);
	let dialog = await openPlan();
	await expect(dialog.locator(`[data-target="${role}"] [data-unknown]`)).toHaveCount(0);
	await expect(dialog).not.toContainText('is unknown');

	// Any 40 hex digits can be notified; the console's checkout does not have this one.
	await notify(bogus);
	dialog = await openPlan();
	await expect(dialog.locator(`[data-target="${role}"]`)).toContainText(bogus.slice(0, 7));
	await expect(dialog.locator(`[data-target="${role}"] [data-unknown]`)).toHaveText('unknown commit');
	await expect(dialog.getByTestId('plan-warnings')).toContainText(
		`${role}: commit ${bogus.slice(0, 12)} is unknown (not in the console's checkout ${dir}); its update will fail on every node.`
	);
	// The warning comes before the button that confirms.
	const warningTop = await dialog.getByTestId('plan-warnings').evaluate((el) => el.getBoundingClientRect().top);
	const confirmTop = await dialog
		.getByRole('button', { name: /^Confirm and update/ })
		.evaluate((el) => el.getBoundingClientRect().top);
	expect(warningTop).toBeLessThan(confirmTop);
	await page.screenshot({ path: `${shots}/plan-unknown-commit-1440.png`, fullPage: true });
	await page.setViewportSize({ width: 390, height: 844 });
	await page.screenshot({ path: `${shots}/plan-unknown-commit-390.png`, fullPage: true });
	await page.setViewportSize({ width: 1440, height: 900 });

	// Pinned back to the known commit: the plan has nothing to warn about.
	expect((await post(`/api/roles/${role}/pin`, { commit: known })).status).toBe(200);
	dialog = await openPlan();
	await expect(dialog.locator(`[data-target="${role}"] [data-unknown]`)).toHaveCount(0);
	await expect(dialog).not.toContainText('is unknown');
	// A git role's commit that the node's last fetch did not bring, at a known time.
	const gitBogus = `d0ffee${stamp}`.padEnd(40, '2');
	expect((await post('/api/code-source/notify', { commit: gitBogus, changed_roles: [gitRole] })).status).toBe(200);
	await db`insert into role_commit_checks (node_id, role, commit, found, checked_at)
		values (${nodeId}, ${gitRole}, ${gitBogus}, false, '2026-11-30T02:00:05.250Z')`;
	dialog = await openPlan();
	await expect(dialog.locator(`[data-target="${gitRole}"] [data-unknown]`)).toHaveText('unknown commit');
	await expect(dialog.getByTestId('plan-warnings')).toContainText(
		`${gitRole}: commit ${gitBogus.slice(0, 12)} is unknown (not in ${role}-node's fetched repository /opt/${gitRole} (checked 2026-11-30T02:00:05Z))`
	);
	await page.screenshot({ path: `${shots}/plan-unknown-git-commit-1440.png`, fullPage: true });

	// Nothing was confirmed: no run touched the node.
	expect(await db`select id from tasks where node_id = ${nodeId}`).toHaveLength(0);
});
