import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { type Browser } from '@playwright/test';
import { expect, test } from './support/test';
import { hmacSignature } from '../../src/lib/server/releases/signing.ts';
import { call, cookie, people, signInAs } from './support/console';

/**
 * Every page, in the light and the dark theme, wide and at 390 px, checked by axe-core against WCAG 2.1 A and AA
 * (contrast, names, labels, landmarks, keyboard reachability of what axe can see). A page with pages of its own
 * (a node, a run, a release) is checked on one made here; nothing here contacts a host.
 */

const SECRET = 'e2e-release-signing-secret-0123';
const made = { node: '', credential: '', run: '', release: '' };

test.describe.configure({ mode: 'default' });

test.beforeAll(async () => {
	const admin = await signInAs('admin');
	const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
	const dir = mkdtempSync(join(tmpdir(), 'flotilla-a11y-'));
	execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const key = readFileSync(join(dir, 'key'), 'utf8');
	rmSync(dir, { recursive: true });
	const cred = await post('/api/credentials', { name: `a11y-${Date.now()}`, private_key: key });
	expect(cred.status).toBe(201);
	made.credential = (await cred.json()).id;
	// Nothing listens there: the check below fails at once, which gives the run page a failed task to show.
	const node = await post('/api/nodes', {
		name: `a11y-node-${Date.now()}`,
		host: '127.0.1.251',
		credential_id: made.credential,
		host_key_fingerprint: `SHA256:${'A'.repeat(43)}`
	});
	expect(node.status).toBe(201);
	made.node = (await node.json()).id;
	const run = await post('/api/runs', { kind: 'check', nodes: [made.node] });
	expect(run.status).toBe(202);
	made.run = (await run.json()).run_id;
	const manifest = {
		version: `9.${Date.now() % 100_000}.0`,
		sha: 'abcdef0',
		channel: 'beta',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	const release = await post('/api/releases', { ...manifest, signature: hmacSignature(manifest, SECRET) });
	expect(release.status).toBe(201);
	made.release = (await release.json()).id;
});

test.afterAll(async () => {
	const admin = await signInAs('admin');
	if (made.node) await call(`/api/nodes/${made.node}`, { method: 'DELETE', headers: cookie(admin) });
	if (made.credential) await call(`/api/credentials/${made.credential}`, { method: 'DELETE', headers: cookie(admin) });
});

const pages = () => [
	'/',
	'/code-sync',
	'/system-updates',
	'/certificates',
	'/rollouts',
	'/releases',
	`/releases/${made.release}`,
	'/runs',
	`/runs/${made.run}`,
	`/nodes/${made.node}`,
	'/audit',
	'/api-docs',
	'/settings',
	'/settings/nodes',
	'/settings/nodes/import',
	'/settings/users',
	'/settings/ssh-keys',
	'/settings/notifications'
];

async function adminPage(browser: Browser, width: number, colorScheme: 'light' | 'dark') {
	const context = await browser.newContext({ viewport: { width, height: 900 }, colorScheme });
	const page = await context.newPage();
	await page.goto('/login');
	await page.getByLabel('Username').fill(people.admin.username);
	await page.getByLabel('Password').fill(people.admin.password);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await expect(page.getByRole('heading', { name: 'Fleet Overview' })).toBeVisible();
	return { page, context };
}

const summary = (violations: Awaited<ReturnType<AxeBuilder['analyze']>>['violations']) =>
	violations.flatMap((v) =>
		v.nodes.map(
			(n) => `${v.id} (${v.impact}): ${n.target.join(' ')} ${n.html.slice(0, 160)} — ${n.failureSummary ?? v.help}`
		)
	);

for (const colorScheme of ['light', 'dark'] as const) {
	for (const width of [1440, 390]) {
		test(`every page passes axe (WCAG 2.1 AA), ${colorScheme}, ${width} px`, async ({ browser }) => {
			// A budget per page, not for the whole list: the list grows with the console (19 pages here; the API
			// reference alone renders every documented schema), and axe takes seconds on a large page.
			test.setTimeout(20_000 * (pages().length + 2));
			const login = await (await browser.newContext({ viewport: { width, height: 900 }, colorScheme })).newPage();
			await login.goto('/login');
			const found: Record<string, string[]> = {};
			const loginViolations = (
				await new AxeBuilder({ page: login }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']).analyze()
			).violations;
			if (loginViolations.length) found['/login'] = summary(loginViolations);
			const { page } = await adminPage(browser, width, colorScheme);
			for (const path of pages()) {
				await page.goto(path);
				await page.waitForLoadState('networkidle');
				const { violations } = await new AxeBuilder({ page })
					.withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
					.analyze();
				if (violations.length) found[path] = summary(violations);
			}
			expect(found).toEqual({});
		});
	}
}
