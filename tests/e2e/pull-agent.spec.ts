import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { baseURL, call, cookie, signInAs } from './support/console';

/**
 * The pull agent's section of the node page (docs/pull-agent.md, "Enrolment"): an admin presses Enrol, and the
 * command line the page shows, run as it is, starts the real agent, which exchanges the token for its secret and
 * polls; the page then says so. Revoke asks first. No SSH: the node's address is never contacted.
 */

const shots = 'test-results/screenshots';
const stamp = Date.now() % 1_000_000;
let admin = '';
let dir = '';
let agent: ChildProcess | null = null;

async function signInPage(page: Page, session: string) {
	const [name, ...value] = session.split(';')[0]!.split('=');
	await page.context().addCookies([{ name: name!, value: value.join('='), url: baseURL }]);
}

async function addNode(name: string): Promise<string> {
	const key = join(dir, 'id_ed25519');
	if (!existsSync(key)) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
	const cred = await call('/api/credentials', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: `${name}-key`, private_key: await readFile(key, 'utf8') }
	});
	expect(cred.status, await cred.clone().text()).toBe(201);
	const node = await call('/api/nodes', {
		method: 'POST',
		headers: cookie(admin),
		json: { name, host: '192.0.2.10', credential_id: ((await cred.json()) as { id: string }).id }
	});
	expect(node.status, await node.clone().text()).toBe(201);
	return ((await node.json()) as { id: string }).id;
}

test.beforeAll(async () => {
	admin = await signInAs('admin');
	dir = await mkdtemp(join(tmpdir(), 'flotilla-e2e-agent-'));
});

test.afterAll(async () => {
	if (agent && agent.exitCode === null && agent.signalCode === null) process.kill(-agent.pid!, 'SIGKILL');
	if (dir) await rm(dir, { recursive: true, force: true });
});

test('an admin enrols a node’s agent from its page: the command shown starts the agent, which enrols once; Revoke asks first', async ({
	page
}) => {
	const name = `agent-page-${stamp}`;
	const id = await addNode(name);
	await signInPage(page, admin);
	await page.setViewportSize({ width: 1440, height: 1000 });
	await page.goto(`/nodes/${id}`);
	const section = page.getByTestId('node-agent');
	await expect(section.getByTestId('agent-state')).toHaveText('not enrolled');
	await expect(section.getByTestId('agent-last-poll')).toHaveText('—');
	await expect(section.getByRole('button', { name: 'Revoke' })).toHaveCount(0);

	await section.getByLabel('Token valid for (minutes)').fill('30');
	await section.getByRole('button', { name: 'Enrol', exact: true }).click();
	const shown = section.getByTestId('agent-token');
	await expect(shown).toBeVisible();
	const token = (await shown.getByTestId('agent-token-value').textContent())!.trim();
	expect(token).toMatch(/^[0-9a-f]{64}$/);
	const command = (await shown.getByTestId('agent-command').textContent())!.trim();
	expect(command).toBe(
		`FLOTILLA_URL='${baseURL}' FLOTILLA_NODE_ID='${id}' FLOTILLA_ENROL_TOKEN='${token}' sh flotilla-agent`
	);
	// The token waits, and Revoke could drop it.
	await expect(section.getByRole('button', { name: 'Revoke' })).toBeVisible();
	await page.screenshot({ path: `${shots}/pull-agent-enrol-1440.png`, fullPage: true });
	await page.setViewportSize({ width: 390, height: 900 });
	await section.scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/pull-agent-enrol-390.png`, fullPage: true });
	await page.setViewportSize({ width: 1440, height: 1000 });

	// The command as shown, in the agent's folder, with the node's update commands in its environment.
	const state = join(dir, 'state');
	agent = spawn('sh', ['-c', command], {
		cwd: resolve('agent'),
		detached: true,
		stdio: ['ignore', 'ignore', 'pipe'],
		env: {
			PATH: process.env.PATH,
			AGENT_STATE_FILE: state,
			AGENT_POLL_SECONDS: '1',
			UPDATE_BACKUP_CMD: 'true',
			UPDATE_PULL_CMD: 'true',
			UPDATE_MIGRATE_CMD: 'true',
			UPDATE_SMOKE_CMD: 'true',
			UPDATE_SWITCH_CMD: 'true'
		}
	});
	let stderr = '';
	agent.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
	await expect
		.poll(
			async () => {
				const r = await call(`/api/nodes/${id}/agent`, { headers: cookie(admin) });
				return r.status === 200 ? ((await r.json()) as { agent_version: string | null }).agent_version : null;
			},
			{ message: 'the agent enrolled and polled', timeout: 30_000 }
		)
		.toBe('1.0.0');
	expect(stderr).toContain('enrolled');

	await page.reload();
	await expect(section.getByTestId('agent-state')).toContainText('enrolled');
	await expect(section.getByTestId('agent-state')).not.toContainText('not enrolled');
	await expect(section.getByTestId('agent-version')).toHaveText('1.0.0');
	await expect(section.getByTestId('agent-last-poll')).not.toHaveText(/never|—/);
	await expect(section.getByTestId('agent-token')).toHaveCount(0);
	await expect(section.getByRole('button', { name: 'Enrol again' })).toBeVisible();
	await page.screenshot({ path: `${shots}/pull-agent-enrolled-1440.png`, fullPage: true });
	// Not reachable over SSH (its host key was never pinned): no install form.
	await expect(section.getByTestId('agent-install')).toHaveCount(0);

	// The Fleet Overview says, under the node's status, the agent's version and when it last polled.
	await page.goto(`/?q=${encodeURIComponent(name)}`);
	const row = page.locator(`tr[data-node="${name}"]`);
	await expect(row.getByTestId('status-note')).toHaveText(/^pull agent 1\.0\.0 · last poll \d+ (s|min) ago$/);
	await page.screenshot({ path: `${shots}/pull-agent-fleet-overview-1440.png`, fullPage: true });
	await page.goto(`/nodes/${id}`);

	// Revoke asks first: dismissed, nothing changes; accepted, the agent is revoked.
	page.once('dialog', (d) => void d.dismiss());
	await section.getByRole('button', { name: 'Revoke' }).click();
	await expect(section.getByTestId('agent-version')).toHaveText('1.0.0');
	expect((await call(`/api/nodes/${id}/agent`, { headers: cookie(admin) })).status).toBe(200);
	page.once('dialog', (d) => {
		expect(d.message()).toContain(`Revoke ${name}'s agent?`);
		void d.accept();
	});
	await section.getByRole('button', { name: 'Revoke' }).click();
	await expect(page.getByText('The agent was revoked')).toBeVisible();
	await expect(section.getByTestId('agent-state')).toHaveText('not enrolled');
	expect((await call(`/api/nodes/${id}/agent`, { headers: cookie(admin) })).status).toBe(404);
	process.kill(-agent.pid!, 'SIGKILL');
});

test('the agent section is for admins only', async ({ page }) => {
	const id = await addNode(`agent-page-op-${stamp}`);
	await signInPage(page, await signInAs('operator'));
	await page.goto(`/nodes/${id}`);
	await expect(page.getByTestId('node-facts')).toBeVisible();
	await expect(page.getByTestId('node-agent')).toHaveCount(0);
});
