import { expect, test } from '@playwright/test';
import { bearer, call, cookie, people, saveTokens, signInAs, type Scope } from './support/console';

test('a new console asks for its first admin once, then never again', async ({ page }) => {
	await page.goto('/');
	await expect(page).toHaveURL(/\/setup$/);
	await expect(page.getByRole('heading', { name: 'Create the first admin' })).toBeVisible();

	// Bad input is refused with the field named, and nothing is created.
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password (12 characters or more)').fill('short');
	await page.getByLabel('Repeat the password').fill('short');
	await page.getByLabel('Password (12 characters or more)').evaluate((el) => el.removeAttribute('minlength'));
	await page.getByRole('button', { name: 'Create admin and sign in' }).click();
	await expect(page.getByText('must be at least 12 characters').first()).toBeVisible();

	await page.getByLabel('Password (12 characters or more)').fill(people.admin.password);
	await page.getByLabel('Repeat the password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Create admin and sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	await expect(page.getByTestId('user-menu')).toContainText('admin');

	// The set-up page is gone, for everyone.
	expect((await page.goto('/setup'))?.status()).toBe(404);
	expect((await call('/setup')).status).toBe(404);
	const retry = await call('/setup', {
		method: 'POST',
		body: new URLSearchParams({ username: 'intruder', password: 'x'.repeat(16), confirm: 'x'.repeat(16) }),
		headers: { origin: new URL(page.url()).origin, 'content-type': 'application/x-www-form-urlencoded' }
	});
	expect(retry.status).toBe(404);
});

test('the admin adds an operator and a viewer, and makes a token of each scope', async () => {
	const admin = await signInAs('admin');
	for (const role of ['operator', 'viewer'] as const) {
		const res = await call('/api/users', {
			method: 'POST',
			headers: cookie(admin),
			json: { ...people[role], role }
		});
		expect(res.status).toBe(201);
		expect(await res.json()).toMatchObject({ username: people[role].username, role });
	}

	const tokens = {} as Record<Scope, string>;
	for (const scope of ['read', 'operate', 'admin'] as const) {
		const res = await call('/api/auth/tokens', {
			method: 'POST',
			headers: cookie(admin),
			json: { name: `e2e-${scope}`, scopes: [scope], expires_in_days: 1 }
		});
		expect(res.status).toBe(201);
		const body = await res.json();
		expect(body.token).toMatch(/^flt_/);
		tokens[scope] = body.token;
	}
	expect((await call('/api/me', { headers: bearer(tokens.operate) }).then((r) => r.json())).level).toBe('operate');
	saveTokens(tokens);
});
