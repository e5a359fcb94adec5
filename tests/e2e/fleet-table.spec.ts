import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Page } from '@playwright/test';
import { expect, test } from './support/test';
import { baseURL, call, consoleDatabase, cookie, signInAs } from './support/console';

/**
 * The nodes table as operators live in it (issue 19): sorted by a column named in the URL (kept by the filters,
 * paged in that order), a node with run history removed only when its name is typed, and the overview and a node's
 * page at 390 px; several nodes with history deleted only when "delete N nodes" is typed, and the Settings → Nodes
 * table inside its card at 1440 px with a host-key badge showing. No testbed host: the nodes point at 127.0.1.86
 * and .87, where nothing listens, so the check runs below find their node unreachable.
 */

const shots = 'test-results/screenshots';
const db = consoleDatabase();
const stamp = Date.now() % 1_000_000;
const prefix = `ft${stamp}`;
let admin = '';
let credential = '';
const ids: Record<string, string> = {};

const post = (path: string, json: unknown) => call(path, { method: 'POST', headers: cookie(admin), json });
const get = (path: string) => call(path, { headers: cookie(admin) });

async function signInPage(page: Page) {
	const [name, ...value] = admin.split(';')[0]!.split('=');
	await page.context().addCookies([{ name: name!, value: value.join('='), url: baseURL }]);
}

const names = async (query: string) =>
	((await (await get(`/api/nodes?q=${prefix}&${query}`)).json()).items as { name: string }[]).map((n) => n.name);

test.describe.configure({ mode: 'default' });

test.beforeAll(async () => {
	admin = await signInAs('admin');
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-ft-'));
	await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const cred = await post('/api/credentials', {
		name: `${prefix}-key`,
		private_key: await readFile(join(dir, 'key'), 'utf8')
	});
	await rm(dir, { recursive: true, force: true });
	expect(cred.status).toBe(201);
	credential = (await cred.json()).id;
	// Names, addresses and ports in three different orders: a (.87:22), b (.86:2222), c (.86:22).
	for (const [suffix, host, port] of [
		['a', '127.0.1.87', 22],
		['b', '127.0.1.86', 2222],
		['c', '127.0.1.86', 22]
	] as const) {
		const res = await post('/api/nodes', { name: `${prefix}-${suffix}`, host, port, credential_id: credential });
		expect(res.status, await res.clone().text()).toBe(201);
		ids[suffix] = (await res.json()).id;
	}
	// A check of b: nothing listens there, so b becomes UNREACHABLE, and it now has run history.
	const run = await post('/api/runs', { kind: 'check', nodes: [ids.b] });
	expect(run.status).toBe(202);
	const runId = (await run.json()).run_id as string;
	await expect
		.poll(async () => (await (await get(`/api/runs/${runId}`)).json()).state, { timeout: 30_000 })
		.toMatch(/^(succeeded|failed)$/);
	await expect.poll(async () => (await names('status=UNREACHABLE')).join(), { timeout: 10_000 }).toBe(`${prefix}-b`);
});

test.afterAll(async () => {
	await db`delete from nodes where name like ${prefix + '-%'}`;
	await db`delete from credentials where name = ${prefix + '-key'}`;
	await db.end();
});

test('GET /api/nodes sorts by a column either way and pages in that order; a bad sort or cursor is refused by name', async () => {
	const [a, b, c] = ['a', 'b', 'c'].map((s) => `${prefix}-${s}`);
	expect(await names('')).toEqual([a, b, c]);
	expect(await names('sort=-name')).toEqual([c, b, a]);
	// By address: host first, then the port as a number (22 before 2222), not as text.
	expect(await names('sort=address')).toEqual([c, b, a]);
	expect(await names('sort=-address')).toEqual([a, b, c]);
	// By status in the order of the overview's cards: UP_TO_DATE first, UNREACHABLE last.
	expect(await names('sort=status')).toEqual([a, c, b]);
	expect(await names('sort=-status')).toEqual([b, c, a]);
	// Only b was ever seen to fail: the never-seen ones first, ascending (names break the tie).
	expect((await names('sort=-last_seen')).at(-1)).toBe(a);

	// One row a page, in the sort's order, until next_cursor is null.
	for (const sort of ['address', '-address', 'status', '-name']) {
		const paged: string[] = [];
		let cursor: string | null = null;
		do {
			const res = await get(
				`/api/nodes?q=${prefix}&sort=${sort}&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
			);
			expect(res.status).toBe(200);
			const body = (await res.json()) as { items: { name: string }[]; next_cursor: string | null };
			paged.push(...body.items.map((n) => n.name));
			cursor = body.next_cursor;
		} while (cursor);
		expect(paged, sort).toEqual(await names(`sort=${sort}`));
	}

	const badSort = await get('/api/nodes?sort=colour');
	expect(badSort.status).toBe(400);
	expect((await badSort.json()).error.fields).toHaveProperty('sort');
	// A cursor of a sort by name is a name: it is not a cursor of a sort by address.
	const badCursor = await get(`/api/nodes?sort=address&cursor=${prefix}-a`);
	expect(badCursor.status).toBe(400);
	expect((await badCursor.json()).error.fields).toHaveProperty('cursor');
	expect((await get(`/api/nodes?sort=status&cursor=W1sxXV0`)).status).toBe(400);
});

test('the overview sorts by a column header, keeps the sort in the URL and through the filters', async ({ page }) => {
	await signInPage(page);
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto(`/?q=${prefix}`);
	const rows = page.locator('tr[data-node]');
	const shown = async () => rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-node')));
	const [a, b, c] = ['a', 'b', 'c'].map((s) => `${prefix}-${s}`);
	await expect(rows).toHaveCount(3);
	expect(await shown()).toEqual([a, b, c]);
	await expect(page.getByRole('columnheader', { name: 'Node', exact: true })).toHaveAttribute('aria-sort', 'ascending');

	await page.getByRole('link', { name: 'Address' }).click();
	await expect(page).toHaveURL(/sort=address/);
	await expect(page.getByRole('columnheader', { name: /Address/ })).toHaveAttribute('aria-sort', 'ascending');
	await expect.poll(shown).toEqual([c, b, a]);
	await page.getByRole('link', { name: /Address/ }).click();
	await expect(page).toHaveURL(/sort=-address/);
	await expect(page.getByRole('columnheader', { name: /Address/ })).toHaveAttribute('aria-sort', 'descending');
	await expect.poll(shown).toEqual([a, b, c]);

	await page.getByRole('link', { name: 'Status' }).click();
	await expect(page).toHaveURL(/sort=status/);
	await expect.poll(shown).toEqual([a, c, b]);
	await page.screenshot({ path: `${shots}/fleet-sorted-by-status.png` });
	// A filter chosen now keeps the sort, and the sorted, filtered view reloads as it was (a URL to share).
	await page.locator('#fleet-connection').selectOption('unchecked');
	await expect(page).toHaveURL(/connection=unchecked/);
	await expect(page).toHaveURL(/sort=status/);
	await expect.poll(shown).toEqual([a, c]);
	await page.reload();
	await expect.poll(shown).toEqual([a, c]);
	await expect(page.getByRole('columnheader', { name: /Status/ })).toHaveAttribute('aria-sort', 'ascending');
	// A stale cursor of another sort is the visitor's mistake: 400, not 500.
	expect((await page.goto(`/?sort=address&cursor=${a}`))!.status()).toBe(400);
});

test('removing a node with run history asks for its name; a wrong name removes nothing', async ({ page }) => {
	await signInPage(page);
	await page.goto('/settings/nodes');
	/** Clicks, answers the browser's question (typing `text` when it asks for it), and returns the question. */
	const answer = async (button: ReturnType<typeof page.getByRole>, text: string | null) => {
		let asked = { type: '', message: '' };
		page.once('dialog', (d) => {
			asked = { type: d.type(), message: d.message() };
			void (text === null ? d.dismiss() : d.accept(text));
		});
		await button.click();
		return asked;
	};
	const exists = async (suffix: string) =>
		(await db`select count(*)::int as n from nodes where id = ${ids[suffix]!}`)[0]!.n === 1;

	const remove = page.getByRole('button', { name: `Remove ${prefix}-b` });
	const cancelled = await answer(remove, null);
	expect(cancelled.type).toBe('prompt');
	expect(cancelled.message).toContain('It has run history');
	expect(cancelled.message).toContain(`Type ${prefix}-b to confirm.`);
	expect(await exists('b')).toBe(true);

	await answer(remove, `${prefix}-a`);
	await expect(page.getByRole('alert')).toContainText(`${prefix}-b has run history: type its name to remove it`);
	expect(await exists('b')).toBe(true);
	await page.screenshot({ path: `${shots}/remove-node-typed-name.png`, fullPage: true });

	// The form alone (no browser question) is refused the same way: the server compares the name.
	const refused = await call('/settings/nodes?/deleteNode', {
		method: 'POST',
		headers: { ...cookie(admin), origin: baseURL, 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams({ id: ids.b! })
	});
	expect(await refused.text()).toContain('confirm_name');
	expect(await exists('b')).toBe(true);

	await answer(remove, `${prefix}-b`);
	await expect(remove).toHaveCount(0);
	expect(await exists('b')).toBe(false);
	const [audit] = await db`select action from audit_log where target_id = ${ids.b!} order by id desc limit 1`;
	expect(audit!.action).toBe('node.delete');

	// A node without history still goes after a plain confirmation.
	const plain = await answer(page.getByRole('button', { name: `Remove ${prefix}-c` }), '');
	expect(plain.type).toBe('confirm');
	await expect(page.getByRole('button', { name: `Remove ${prefix}-c` })).toHaveCount(0);
	expect(await exists('c')).toBe(false);
});

test('at 390 px the overview and a node page never scroll sideways; the table scrolls inside its card', async ({
	page
}) => {
	await signInPage(page);
	await page.setViewportSize({ width: 390, height: 844 });
	const sideways = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
	await page.goto('/');
	await expect(page.getByRole('heading', { level: 1, name: 'Fleet Overview' })).toBeVisible();
	expect(await sideways()).toBeLessThanOrEqual(0);
	const card = page.getByRole('region', { name: 'Nodes' });
	expect(await card.evaluate((el) => el.getBoundingClientRect().right)).toBeLessThanOrEqual(390);
	await expect(page.getByRole('navigation', { name: 'Main' })).toBeHidden();
	await page.screenshot({ path: `${shots}/overview-390.png`, fullPage: true });

	await page.goto(`/nodes/${ids.a}`);
	await expect(page.getByRole('heading', { level: 1, name: `${prefix}-a` })).toBeVisible();
	expect(await sideways()).toBeLessThanOrEqual(0);
	await page.screenshot({ path: `${shots}/node-page-390.png`, fullPage: true });
});

/** Adds a node at .86 or .87 (nothing listens there) and returns its id. */
async function addNode(suffix: string, host = '127.0.1.86') {
	const res = await post('/api/nodes', { name: `${prefix}-${suffix}`, host, credential_id: credential });
	expect(res.status, await res.clone().text()).toBe(201);
	return (await res.json()).id as string;
}

/** Runs a check of the node and waits for its end: the node then has run history. */
async function giveHistory(id: string) {
	const started = await post('/api/runs', { kind: 'check', nodes: [id] });
	expect(started.status).toBe(202);
	const runId = (await started.json()).run_id as string;
	await expect
		.poll(async () => (await (await get(`/api/runs/${runId}`)).json()).ended_at, { timeout: 60_000 })
		.toBeTruthy();
}

test('deleting several nodes of which one has run history asks for "delete N nodes"; a wrong answer deletes none', async ({
	page
}) => {
	const d = await addNode('bulk-d');
	const e = await addNode('bulk-e', '127.0.1.87');
	await giveHistory(d);
	await signInPage(page);
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto('/settings/nodes');
	const bar = page.getByTestId('bulk-bar');
	await page.getByLabel(`Select ${prefix}-bulk-d`).check();
	await page.getByLabel(`Select ${prefix}-bulk-e`).check();
	await bar.getByLabel('Change').selectOption('delete');
	const left = async () => (await db`select count(*)::int as n from nodes where id in (${d}, ${e})`)[0]!.n;
	/** Clicks Delete, answers the browser's question (typing `text`, or cancelling), and returns the question. */
	const answer = async (text: string | null) => {
		let asked = { type: '', message: '' };
		page.once('dialog', (dialog) => {
			asked = { type: dialog.type(), message: dialog.message() };
			void (text === null ? dialog.dismiss() : dialog.accept(text));
		});
		await bar.getByRole('button', { name: 'Delete 2 nodes…' }).click();
		await expect.poll(() => asked.type).not.toBe('');
		return asked;
	};

	const cancelled = await answer(null);
	expect(cancelled.type).toBe('prompt');
	expect(cancelled.message).toContain(`Delete 2 nodes from the fleet: ${prefix}-bulk-d, ${prefix}-bulk-e?`);
	expect(cancelled.message).toContain('Some have run history');
	expect(cancelled.message).toContain('Type delete 2 nodes to confirm.');
	expect(await left()).toBe(2);

	await answer('2');
	await expect(page.getByRole('alert')).toContainText('Some of these nodes have run history: type "delete 2 nodes"');
	expect(await left()).toBe(2);
	await page.screenshot({ path: `${shots}/bulk-delete-typed-1440.png`, fullPage: true });

	// The form alone (no browser question) is refused the same way: the server compares what was typed.
	const refused = await call('/settings/nodes?/bulk', {
		method: 'POST',
		headers: { ...cookie(admin), origin: baseURL, 'content-type': 'application/x-www-form-urlencoded' },
		body: new URLSearchParams([
			['action', 'delete'],
			['nodes', d],
			['nodes', e]
		])
	});
	expect(await refused.text()).toContain('confirm_name');
	expect(await left()).toBe(2);

	await answer('delete 2 nodes');
	await expect(page.getByText(`Deleted 2 nodes: ${prefix}-bulk-d, ${prefix}-bulk-e.`)).toBeVisible();
	expect(await left()).toBe(0);
	const audits = await db`select action, details->>'name' as name from audit_log
		where target_id in (${d}, ${e}) and action = 'node.delete' order by details->>'name'`;
	expect(audits.map((a) => a.name)).toEqual([`${prefix}-bulk-d`, `${prefix}-bulk-e`]);
});

test('at 1440 px the Settings → Nodes table fits its card with a host-key badge showing, Remove buttons in view', async ({
	page
}) => {
	const f = await addNode('hostkey-changed-node');
	// What a refused connection to a node whose key changed leaves behind: the widest badge and a fingerprint.
	await db`update nodes set host_key_status = 'changed', reachable = false,
		host_key_fingerprint = ${'SHA256:' + 'Q'.repeat(43)}, last_check_at = now() where id = ${f}`;
	await signInPage(page);
	await page.setViewportSize({ width: 1440, height: 900 });
	await page.goto('/settings/nodes');
	const row = page.locator(`tr[data-node="${prefix}-hostkey-changed-node"]`);
	await expect(row).toContainText('HOST KEY CHANGED');
	const card = page.getByRole('region', { name: 'Nodes' });
	const { scroll, client } = await card.evaluate((el) => ({ scroll: el.scrollWidth, client: el.clientWidth }));
	expect(scroll).toBeLessThanOrEqual(client);
	// Every row's Remove button lies inside the card.
	const right = await card.evaluate((el) => el.getBoundingClientRect().right);
	for (const button of await card.getByRole('button', { name: /^Remove / }).all()) {
		expect(await button.evaluate((el) => el.getBoundingClientRect().right)).toBeLessThanOrEqual(right);
	}
	await row.scrollIntoViewIfNeeded();
	await page.screenshot({ path: `${shots}/settings-nodes-host-key-1440.png`, fullPage: true });
	await page.setViewportSize({ width: 390, height: 844 });
	await page.screenshot({ path: `${shots}/settings-nodes-host-key-390.png`, fullPage: true });
});
