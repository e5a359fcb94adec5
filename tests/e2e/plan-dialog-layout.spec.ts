import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import AxeBuilder from '@axe-core/playwright';
import { type Locator, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { baseURL, call, consoleDatabase, cookie, signInAs } from './support/console';

/**
 * A long plan on a phone (issue 19, "Usable on a phone and by keyboard"): the plan dialog is never taller than the
 * screen, its title and its Cancel / Confirm row stay in view and only the plan between them scrolls, at 390 and at
 * 1440 px, in both themes, with the keyboard still kept inside. No testbed host: the nodes point at 127.0.1.231,
 * where nothing listens, and nothing is confirmed, so nothing connects to them.
 */

const shots = 'test-results/screenshots';
const stamp = Date.now() % 1_000_000;
const role = `pl${stamp}`;
const db = consoleDatabase();
const NODES = 40;
let admin = '';
let credential = '';
const nodeIds: string[] = [];

const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });

test.describe.configure({ mode: 'default' });

test.beforeAll(async () => {
	admin = await signInAs('admin');
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-pl-'));
	await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const cred = await post('/api/credentials', {
		name: `${role}-key`,
		private_key: await readFile(join(dir, 'key'), 'utf8')
	});
	await rm(dir, { recursive: true, force: true });
	expect(cred.status).toBe(201);
	credential = (await cred.json()).id;
	const created = await post('/api/roles', { name: role, path: `/opt/${role}`, units: [`${role}.service`] });
	expect(created.status, await created.clone().text()).toBe(201);
	for (let i = 0; i < NODES; i++) {
		const node = await post('/api/nodes', {
			name: `${role}-${String(i).padStart(2, '0')}`,
			host: '127.0.1.231',
			port: 30_000 + i,
			credential_id: credential,
			host_key_fingerprint: 'SHA256:' + 'A'.repeat(43),
			roles: [role]
		});
		expect(node.status, await node.clone().text()).toBe(201);
		nodeIds.push((await node.json()).id);
	}
	// Every node of the role is behind this commit, so the role's plan lists all of them.
	const notified = await post('/api/code-source/notify', { commit: 'ab'.repeat(20), changed_roles: [role] });
	expect(notified.status).toBe(200);
});

test.afterAll(async () => {
	for (const id of nodeIds) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
	await call(`/api/roles/${role}`, { method: 'DELETE', headers: cookie(admin) });
	if (credential) await call(`/api/credentials/${credential}`, { method: 'DELETE', headers: cookie(admin) });
	await db.end();
});

async function openPlan(page: Page) {
	await page.goto('/code-sync');
	const opener = page.getByRole('button', { name: `Update ${role}`, exact: true });
	await opener.click();
	const dialog = page.getByTestId('plan-dialog');
	await expect(dialog.getByTestId('plan-summary')).toContainText(`${NODES} nodes`);
	return { opener, dialog };
}

/** The element lies wholly inside the viewport, as the page stands (nothing scrolled to reach it). */
async function inViewport(page: Page, el: Locator) {
	const box = (await el.boundingBox())!;
	const view = page.viewportSize()!;
	expect(box.x).toBeGreaterThanOrEqual(0);
	expect(box.y).toBeGreaterThanOrEqual(0);
	expect(box.x + box.width).toBeLessThanOrEqual(view.width);
	expect(box.y + box.height).toBeLessThanOrEqual(view.height);
}

test('a plan of many nodes keeps its title and Confirm in view at 390 and 1440 px; only the plan scrolls', async ({
	browser
}) => {
	const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
	const [name, ...value] = admin.split(';')[0]!.split('=');
	await context.addCookies([{ name: name!, value: value.join('='), url: baseURL }]);
	const page = await context.newPage();

	const { opener, dialog } = await openPlan(page);
	const confirm = dialog.getByRole('button', { name: `Confirm and update ${NODES} nodes` });
	const body = dialog.getByTestId('plan-body');
	// Nothing scrolled: neither the page nor the overlay the dialog sits in.
	expect(await page.evaluate(() => window.scrollY)).toBe(0);
	await inViewport(page, confirm);
	await inViewport(page, dialog.getByRole('button', { name: 'Cancel' }));
	await inViewport(page, dialog.getByRole('heading', { level: 2 }));
	const [scrollHeight, clientHeight] = await body.evaluate((el) => [el.scrollHeight, el.clientHeight]);
	expect(scrollHeight).toBeGreaterThan(clientHeight);
	// The plan lists every node, in its own scrolling body, not behind Confirm.
	await expect(dialog.locator('[data-plan-node]')).toHaveCount(NODES);
	await page.screenshot({ path: `${shots}/plan-dialog-long-390.png` });

	// By keyboard: from the dialog, Tab reaches Confirm (through the plan, which scrolls from the keyboard), and
	// never leaves the dialog on the way.
	await expect(page.getByRole('dialog')).toBeFocused();
	const seen: string[] = [];
	for (let i = 0; i < 12 && !(await confirm.evaluate((el) => el === document.activeElement)); i++) {
		await page.keyboard.press('Tab');
		seen.push(
			await page.evaluate(() => {
				const el = document.activeElement as HTMLElement;
				const inside = !!document.querySelector('[data-testid="plan-dialog"]')?.contains(el);
				return `${inside ? 'in' : 'OUT'}:${el.getAttribute('aria-label') ?? el.textContent?.trim().slice(0, 30)}`;
			})
		);
	}
	expect(seen.at(-1), seen.join(' | ')).toBe(`in:Confirm and update ${NODES} nodes`);
	await expect(confirm).toBeFocused();
	expect(seen.filter((s) => s.startsWith('OUT'))).toEqual([]);
	expect(seen).toContain('in:The plan');
	await inViewport(page, confirm);
	// Confirm is the last stop: Tab goes round to Close, and Shift+Tab back.
	await page.keyboard.press('Tab');
	await expect(dialog.getByRole('button', { name: 'Close' })).toBeFocused();
	await page.keyboard.press('Shift+Tab');
	await expect(confirm).toBeFocused();
	// The plan itself scrolls by keyboard once it has focus.
	await body.focus();
	await page.keyboard.press('End');
	await expect.poll(() => body.evaluate((el) => el.scrollTop)).toBeGreaterThan(0);
	await inViewport(page, confirm);
	await inViewport(page, dialog.getByRole('heading', { level: 2 }));
	await page.screenshot({ path: `${shots}/plan-dialog-long-390-scrolled.png` });

	// Dark theme: the same layout, and the dialog passes axe in both themes.
	for (const colorScheme of ['light', 'dark'] as const) {
		await page.emulateMedia({ colorScheme });
		const { violations } = await new AxeBuilder({ page })
			.include('[data-testid="plan-dialog"]')
			.withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
			.analyze();
		expect(violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)).toEqual([]);
	}
	await page.screenshot({ path: `${shots}/plan-dialog-long-390-dark.png` });
	await page.emulateMedia({ colorScheme: 'light' });

	// Escape still closes it, and focus goes back to the button that opened it.
	await page.keyboard.press('Escape');
	await expect(dialog).toHaveCount(0);
	await expect(opener).toBeFocused();

	// Wide: the same, with Cancel closing it.
	await page.setViewportSize({ width: 1440, height: 900 });
	const wide = await openPlan(page);
	await inViewport(page, wide.dialog.getByRole('button', { name: `Confirm and update ${NODES} nodes` }));
	await page.screenshot({ path: `${shots}/plan-dialog-long-1440.png` });
	await wide.dialog.getByRole('button', { name: 'Cancel' }).click();
	await expect(wide.dialog).toHaveCount(0);

	// Nothing was confirmed: no run touched these nodes.
	expect(await db`select id from tasks where node_id = any(${nodeIds})`).toHaveLength(0);
});
