import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { people, type Role } from './support/console';

const shots = 'test-results/screenshots';

async function signInThroughTheForm(page: Page, role: Role) {
	await page.goto('/');
	await expect(page).toHaveURL(/\/login$/);
	await page.getByLabel('Username').fill(people[role].username);
	await page.getByLabel('Password').fill(people[role].password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
}

const pages = [
	{ link: 'Fleet Overview', heading: 'Fleet Overview', path: '/' },
	{ link: 'Code Sync', heading: 'Code Sync', path: '/code-sync' },
	{ link: 'System Updates', heading: 'System Updates', path: '/system-updates' },
	{ link: 'TLS Certificates', heading: 'TLS Certificates', path: '/certificates' },
	{ link: 'Rollouts', heading: 'Rollouts', path: '/rollouts' },
	{ link: 'Releases', heading: 'Releases', path: '/releases' },
	{ link: 'Audit', heading: 'Audit', path: '/audit' },
	{ link: 'Settings', heading: 'Settings', path: '/settings' }
];

test('an admin signs in, visits every page from the navigation, and signs out', async ({ page }) => {
	await signInThroughTheForm(page, 'admin');
	await page.screenshot({ path: `${shots}/fleet-overview.png`, fullPage: true });

	const nav = page.getByRole('navigation', { name: 'Main' });
	for (const p of pages) {
		await nav.getByRole('link', { name: p.link }).click();
		await expect(page).toHaveURL(new RegExp(`${p.path === '/' ? '/$' : p.path + '$'}`));
		await expect(page.getByRole('heading', { level: 1, name: p.heading })).toBeVisible();
		await expect(nav.getByRole('link', { name: p.link })).toHaveAttribute('aria-current', 'page');
	}
	await page.getByRole('button', { name: 'Sign out', exact: true }).click();
	await expect(page).toHaveURL(/\/login$/);
	await page.goto('/settings');
	await expect(page).toHaveURL(/\/login\?next=%2Fsettings$/);
});

test('a viewer is not offered admin pages, and is refused them when going there directly', async ({ page }) => {
	await signInThroughTheForm(page, 'viewer');
	const nav = page.getByRole('navigation', { name: 'Main' });
	await expect(nav.getByRole('link', { name: 'Code Sync' })).toBeVisible();
	await expect(nav.getByRole('link', { name: 'Audit' })).toHaveCount(0);
	const res = await page.goto('/audit');
	expect(res?.status()).toBe(403);
	await expect(page.getByText('This needs the admin role')).toBeVisible();
});

test('after signing in, the browser returns to the page it asked for', async ({ page }) => {
	await page.goto('/settings');
	await expect(page).toHaveURL(/\/login\?next=%2Fsettings$/);
	await page.getByLabel('Username').fill(people.operator.username);
	await page.getByLabel('Password').fill(people.operator.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page).toHaveURL(/\/settings$/);
});

test('an operator makes an API token, sees it once, and revokes it', async ({ page }) => {
	await signInThroughTheForm(page, 'operator');
	await page.goto('/settings');
	// An operator cannot grant the admin scope; the form says so before the server has to.
	await expect(page.getByRole('checkbox', { name: 'admin' })).toBeDisabled();
	// A name past the limit is refused next to the field, not cut short without a word.
	await page.getByLabel('Name').fill('n'.repeat(81));
	await page.getByRole('button', { name: 'Create' }).click();
	await expect(page.locator('#token-name-error')).toHaveText('must be at most 80 characters');
	await page.getByLabel('Name').fill('browser-made');
	await page.getByRole('checkbox', { name: 'operate' }).check();
	await page.getByRole('button', { name: 'Create' }).click();
	const shown = page.getByTestId('new-token');
	await expect(shown).toHaveValue(/^flt_[a-z2-7]{32}$/);
	const token = await shown.inputValue();
	await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
	await page.getByRole('button', { name: 'Copy' }).click();
	await expect(page.getByRole('button', { name: 'Copied' })).toBeVisible();
	expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(token);

	const row = page.getByTestId('token-table').getByRole('row', { name: /browser-made/ });
	await expect(row).toContainText('read, operate');
	await expect(row).toContainText('active');
	await page.screenshot({ path: `${shots}/settings-tokens.png`, fullPage: true });

	await page.reload();
	await expect(page.getByTestId('new-token')).toHaveCount(0);
	expect(await page.content()).not.toContain(token);

	page.once('dialog', (d) => d.accept());
	await row.getByRole('button', { name: 'Revoke browser-made' }).click();
	await expect(row).toContainText('revoked');
});

test('an admin adds a user, changes their role and disables them', async ({ page }) => {
	await signInThroughTheForm(page, 'admin');
	await page.goto('/settings');
	await page.getByRole('link', { name: 'Users' }).click();
	await expect(page.getByRole('heading', { level: 1, name: 'Users' })).toBeVisible();

	const create = page.locator('form[action="?/create"]');
	await create.getByLabel('Username').fill('carol');
	await create.getByLabel('Password (12 characters or more)').fill('carol passphrase 1');
	await create.getByLabel('Role').selectOption('operator');
	await create.getByRole('button', { name: 'Add user' }).click();
	await expect(page.getByRole('status')).toContainText('Created carol (operator).');

	const row = page.locator('tr[data-username="carol"]');
	await row.getByLabel('Role of carol').selectOption('viewer');
	await row.getByLabel('disabled').check();
	await row.getByRole('button', { name: 'Save' }).click();
	await expect(page.getByRole('status')).toContainText('Saved carol.');
	await expect(row.getByLabel('Role of carol')).toHaveValue('viewer');
	await expect(row.getByLabel('disabled')).toBeChecked();

	// A duplicate name is refused with the field named.
	await create.getByLabel('Username').fill('carol');
	await create.getByLabel('Password (12 characters or more)').fill('another passphrase');
	await create.getByRole('button', { name: 'Add user' }).click();
	await expect(page.getByText('already taken')).toBeVisible();
	await page.screenshot({ path: `${shots}/users.png`, fullPage: true });

	// Demoting the only admin is refused, and the form goes back to what is true instead of what was asked.
	const me = page.locator(`tr[data-username="${people.admin.username}"]`);
	await me.getByLabel(`Role of ${people.admin.username}`).selectOption('viewer');
	await me.getByRole('button', { name: 'Save' }).click();
	await expect(page.getByRole('alert')).toContainText('This is the last active admin');
	await expect(me.getByLabel(`Role of ${people.admin.username}`)).toHaveValue('admin');
});

test('the audit page shows who did what, and filters', async ({ page }) => {
	await signInThroughTheForm(page, 'admin');
	await page.goto('/audit');
	const table = page.getByTestId('audit-table');
	// Newest first: the sign-in that opened this page heads the list.
	const rows = table.locator('tbody tr');
	await expect(rows.first()).toContainText('auth.login');
	await expect(rows.first()).toContainText('admin');
	const ids = async () => await rows.evaluateAll((trs) => trs.map((tr) => Number(tr.dataset.id)));
	const firstPage = await ids();
	expect(firstPage.length).toBeGreaterThan(0);
	expect(firstPage.length).toBeLessThanOrEqual(50);
	expect(firstPage).toEqual([...firstPage].sort((a, b) => b - a));
	// Earlier specs wrote well over a page of entries, so the next page exists and holds older ones.
	await page.getByRole('link', { name: 'Older entries →' }).click();
	await expect(page).toHaveURL(/cursor=\d+/);
	await expect(rows.first()).toBeVisible();
	const secondPage = await ids();
	expect(Math.max(...secondPage)).toBeLessThan(Math.min(...firstPage));

	await page.goto('/audit');
	await page.getByLabel('Action (prefix)').fill('user.');
	await page.getByRole('button', { name: 'Filter' }).click();
	await expect(page).toHaveURL(/action=user\./);
	const actions = await table.locator('tbody tr td:nth-child(3)').allTextContents();
	expect(actions.length).toBeGreaterThan(0);
	for (const a of actions) expect(a).toMatch(/^user\./);
	// Targets are shown whole, and details open in full from a one-line summary.
	const created = table.locator('tbody tr', { hasText: 'user.create' }).last();
	await expect(created.locator('td').nth(3)).toHaveText(/^user [0-9a-f-]{36}$/);
	const details = created.locator('details');
	await expect(details.locator('summary')).toHaveText(/^(?=.*\busername=\S+)(?=.*\brole=(viewer|operator|admin)\b).*$/);
	await details.locator('summary').click();
	await expect(details.locator('pre')).toContainText('"role":');

	await page.goto('/audit?since=not-a-date');
	await expect(page.getByRole('alert')).toContainText('since: must be a date');
});

test('the dark theme sticks across pages', async ({ page }) => {
	await signInThroughTheForm(page, 'viewer');
	await page.getByRole('radio', { name: 'Dark theme' }).click();
	await expect(page.locator('html')).toHaveClass(/dark/);
	await page.goto('/code-sync');
	await expect(page.locator('html')).toHaveClass(/dark/);
	await page.screenshot({ path: `${shots}/code-sync-dark.png`, fullPage: true });
});

test('at 390 px wide every page fits the screen, and the menu opens from a button', async ({ browser }) => {
	const page = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
	await signInThroughTheForm(page, 'admin');
	const nav = page.getByRole('navigation', { name: 'Main' });
	for (const p of pages) {
		await page.goto(p.path);
		await expect(page.getByRole('heading', { level: 1, name: p.heading })).toBeVisible();
		await expect(nav).toBeHidden();
		// Wide tables scroll inside their cards; the page itself never scrolls sideways.
		const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
		expect(overflow, p.path).toBeLessThanOrEqual(0);
	}
	await page.goto('/');
	const update = page.getByRole('button', { name: 'Update All' });
	if (await update.count()) {
		const box = (await update.boundingBox())!;
		expect(box.x + box.width).toBeLessThanOrEqual(390);
	}
	await page.screenshot({ path: `${shots}/fleet-overview-390.png`, fullPage: true });
	await page.getByRole('button', { name: 'Menu' }).click();
	await expect(nav).toBeVisible();
	await nav.getByRole('link', { name: 'Code Sync' }).click();
	await expect(page.getByRole('heading', { level: 1, name: 'Code Sync' })).toBeVisible();
	await expect(nav).toBeHidden();
});
