import { type Browser, type Locator, type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { bearer, call, consoleDatabase, loadTokens, people } from './support/console';

/**
 * The role form for the `commands` deploy method (docs/releases.md, "The commands method"): the six commands with
 * their deadlines, checked by the same schema as the API with each error next to its field, and an edit that
 * opens with what was saved and saves it back unchanged.
 */

const shots = 'test-results/screenshots';
const db = consoleDatabase();

async function signIn(browser: Browser, width: number): Promise<Page> {
	const page = await (await browser.newContext({ viewport: { width, height: 900 } })).newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return page;
}

const commandOf = (page: Page, name: string) => page.locator(`#role-command-${name}`);
const deadlineOf = (page: Page, name: string) => page.locator(`#role-command-${name}-deadline`);
const errorOf = (page: Page, id: string) => page.locator(`#${id} ~ .field-error`);

/**
 * Saves the role and waits for the console's answer to that save: after an earlier save its "Saved role"
 * message is on the page already, so waiting for the message alone let the test read the database too early.
 */
async function saveRole(page: Page, form: Locator): Promise<void> {
	await Promise.all([
		page.waitForResponse((r) => r.request().method() === 'POST' && r.url().includes('/saveRole')),
		form.getByRole('button', { name: 'Save role' }).click()
	]);
}

test.describe.configure({ mode: 'serial' });

test('an admin defines a commands role in the form: a bad deadline is named next to it, the role saves and edits', async ({
	browser
}) => {
	const page = await signIn(browser, 1440);
	await page.goto('/code-sync#role-form');
	const form = page.getByTestId('role-form');
	await form.getByLabel('Name').fill('ui-shop');
	await expect(page.getByTestId('role-commands')).toHaveCount(0);
	await form.getByLabel('Deploy method').selectOption('commands');
	await form.getByLabel('Folder on the node the commands run in').fill('/srv/shop');
	await form.getByLabel('Service units (one per line)').fill('shop.service');
	// A new role starts with each command's default deadline.
	await expect(deadlineOf(page, 'backup')).toHaveValue('600');
	await expect(deadlineOf(page, 'switch')).toHaveValue('60');
	for (const name of ['backup', 'pull', 'migrate', 'smoke', 'switch']) {
		await commandOf(page, name).fill(`/srv/shop/bin/deploy\n${name}`);
	}
	await deadlineOf(page, 'migrate').fill('7200');
	await deadlineOf(page, 'smoke').fill('soon');
	await commandOf(page, 'pull').fill('-x');
	await form.getByRole('button', { name: 'Create role' }).click();

	await expect(errorOf(page, 'role-command-migrate-deadline')).toHaveText('must be 1 to 3600');
	await expect(errorOf(page, 'role-command-smoke-deadline')).toHaveText('must be a number');
	await expect(errorOf(page, 'role-command-pull')).toHaveText('the program must not start with -');
	await expect(deadlineOf(page, 'migrate')).toHaveAttribute('aria-invalid', 'true');
	// What was typed stays, so only the wrong fields need fixing; nothing was saved.
	await expect(commandOf(page, 'backup')).toHaveValue('/srv/shop/bin/deploy\nbackup');
	await expect(deadlineOf(page, 'migrate')).toHaveValue('7200');
	await page.screenshot({ path: `${shots}/role-form-commands-errors.png`, fullPage: true });
	expect((await db`select count(*)::int as n from code_roles where name = 'ui-shop'`)[0]!.n).toBe(0);

	await deadlineOf(page, 'migrate').fill('1800');
	await deadlineOf(page, 'smoke').fill('');
	await commandOf(page, 'pull').fill('/srv/shop/bin/deploy\npull');
	await commandOf(page, 'rollback').fill('/srv/shop/bin/deploy\nrollback');
	await form.getByRole('button', { name: 'Create role' }).click();
	await expect(page.getByText('Created role ui-shop.')).toBeVisible();
	const card = page.locator('[data-role-card="ui-shop"]');
	await expect(card).toBeVisible();
	const [saved] = await db`select method, path, commands from code_roles where name = 'ui-shop'`;
	const deploy = (name: string, deadline: number) => ({
		argv: ['/srv/shop/bin/deploy', name],
		deadline_seconds: deadline
	});
	const expected = {
		backup: deploy('backup', 600),
		pull: deploy('pull', 300),
		migrate: deploy('migrate', 1800),
		// Left empty: the default.
		smoke: deploy('smoke', 120),
		switch: deploy('switch', 60),
		rollback: deploy('rollback', 60)
	};
	expect(saved).toEqual({ method: 'commands', path: '/srv/shop', commands: expected });

	// Edit: the form opens with the saved commands; saved untouched, they stay exactly as they were.
	await card.getByRole('link', { name: 'Edit' }).click();
	await expect(page.getByRole('heading', { name: 'Edit role ui-shop' })).toBeVisible();
	await expect(form.getByLabel('Deploy method')).toHaveValue('commands');
	await expect(commandOf(page, 'rollback')).toHaveValue('/srv/shop/bin/deploy\nrollback');
	await expect(deadlineOf(page, 'migrate')).toHaveValue('1800');
	await saveRole(page, form);
	await expect(page.getByText('Saved role ui-shop.')).toBeVisible();
	expect((await db`select commands from code_roles where name = 'ui-shop'`)[0]!.commands).toEqual(expected);

	// A required command emptied is refused next to it; the rollback emptied is no rollback.
	await commandOf(page, 'switch').fill('');
	await form.getByRole('button', { name: 'Save role' }).click();
	await expect(errorOf(page, 'role-command-switch')).toHaveText('is required');
	await commandOf(page, 'switch').fill('/srv/shop/bin/deploy\nswitch\n--now');
	await commandOf(page, 'rollback').fill('');
	await deadlineOf(page, 'backup').fill('900');
	await saveRole(page, form);
	await expect(page.getByText('Saved role ui-shop.')).toBeVisible();
	const { rollback: _dropped, ...kept } = expected;
	expect((await db`select commands from code_roles where name = 'ui-shop'`)[0]!.commands).toEqual({
		...kept,
		backup: deploy('backup', 900),
		switch: { argv: ['/srv/shop/bin/deploy', 'switch', '--now'], deadline_seconds: 60 }
	});
	await page.screenshot({ path: `${shots}/role-form-commands-desktop.png`, fullPage: true });

	// Another method takes the commands away. The choice holds while the page reloads its data live (here because
	// the role changed through the API meanwhile), which used to put the saved method back into the form.
	await form.getByLabel('Deploy method').selectOption('git');
	const reloaded = page.waitForResponse((r) => r.url().includes('/code-sync/__data.json'));
	const patched = await call('/api/roles/ui-shop', {
		method: 'PATCH',
		headers: bearer(loadTokens().admin),
		json: { description: 'the shop' }
	});
	expect(patched.status).toBe(200);
	await reloaded;
	await expect(form.getByLabel('Description')).toHaveValue('the shop');
	await expect(form.getByLabel('Deploy method')).toHaveValue('git');
	await expect(page.getByTestId('role-commands')).toHaveCount(0);
	await saveRole(page, form);
	await expect(page.getByText('Saved role ui-shop.')).toBeVisible();
	expect((await db`select method, commands from code_roles where name = 'ui-shop'`)[0]).toEqual({
		method: 'git',
		commands: null
	});
	await page.context().close();
});

test('the commands of a role fit a 390 px screen', async ({ browser }) => {
	const page = await signIn(browser, 390);
	await page.goto('/code-sync#role-form');
	const form = page.getByTestId('role-form');
	await form.getByLabel('Deploy method').selectOption('commands');
	await deadlineOf(page, 'pull').fill('301');
	await form.getByRole('button', { name: 'Create role' }).click();
	await expect(errorOf(page, 'role-command-pull-deadline')).toHaveText('must be 1 to 300');
	await expect(errorOf(page, 'role-command-backup')).toHaveText('is required');
	// Nothing is wider than the screen.
	expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
	await page.getByTestId('role-commands').screenshot({ path: `${shots}/role-form-commands-390.png` });
	await page.context().close();
});
