import { execFile } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { baseURL, bearer, call, consoleDatabase, cookie, loadTokens, signInAs } from './support/console';

/**
 * Code Sync's JSON API against the running console: bad input on every endpoint is a 400 naming the field
 * (or 403/409), and changes nothing; the post-commit hook notifies through it. Nodes here are never
 * connected to (dry runs only), so their addresses are placeholders on the testbed range.
 */

const run = promisify(execFile);
const db = consoleDatabase();
// Read in beforeAll: the set-up project writes them, after this file is collected.
let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let credentialId: string;
const created = { nodes: [] as string[], roles: ['api-web', 'api-db'] };

const count = async (table: 'code_roles' | 'code_commits' | 'node_code_versions' | 'runs') =>
	(await db`select count(*)::int as n from ${db(table)}`)[0]!.n as number;

test.beforeAll(async () => {
	tokens = loadTokens();
	admin = await signInAs('admin');
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-key-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const privateKey = await readFile(join(dir, 'key'), 'utf8');
	await rm(dir, { recursive: true, force: true });
	const cred = await call('/api/credentials', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: `code-sync-api-${Date.now()}`, private_key: privateKey }
	});
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
});

test.afterAll(async () => {
	for (const id of created.nodes) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
	for (const name of created.roles) await call(`/api/roles/${name}`, { method: 'DELETE', headers: cookie(admin) });
	await call(`/api/credentials/${credentialId}`, { method: 'DELETE', headers: cookie(admin) });
	await db.end();
});

const post = (path: string, json: unknown, headers: HeadersInit) => call(path, { method: 'POST', headers, json });
const fieldsOf = async (res: Response) => (await res.json()).error?.fields ?? {};

test('roles: bad definitions are refused naming the field; only admins define roles', async () => {
	const before = await count('code_roles');
	const base = { name: 'api-web', path: '/srv/web', units: ['web.service'] };
	for (const [body, field] of [
		[{ ...base, name: 'Web Role' }, 'name'],
		[{ ...base, path: 'srv/web' }, 'path'],
		[{ ...base, path: '/srv/../etc' }, 'path'],
		[{ ...base, method: 'push' }, 'source_repo'],
		[{ ...base, method: 'rsync' }, 'method'],
		[{ ...base, install_command: ['-rf', '/'] }, 'install_command'],
		[{ ...base, install_command: 'make install' }, 'install_command'],
		[{ ...base, install_command: ['make', 'a\nb'] }, 'install_command.1'],
		[{ ...base, units: ['web;reboot'] }, 'units.0'],
		[{ ...base, branch: '--upload-pack=touch /tmp/pwned' }, 'branch'],
		[{ ...base, branch: 'main..evil' }, 'branch'],
		[{ ...base, health: { type: 'http', url: 'ftp://127.0.0.1/' } }, 'health.url'],
		[{ ...base, health: { type: 'shell', command: 'true' } }, 'health.type'],
		[{ ...base, units: [] }, 'units'],
		[{ ...base, health_timeout_seconds: 0 }, 'health_timeout_seconds'],
		[{ ...base, surprise: true }, ''],
		[{ ...base, signatures: { allowed_signers: ['deploy ssh-ed25519 not-a-key'] } }, 'signatures.allowed_signers.0'],
		[{ ...base, signatures: { allowed_signers: [] } }, 'signatures.allowed_signers'],
		[{ ...base, signatures: { openpgp_keys: ['-----BEGIN PGP PRIVATE KEY BLOCK-----'] } }, 'signatures.openpgp_keys.0'],
		[
			{ ...base, readiness_check: { argv: ['./ready.sh'], deadline_seconds: 'soon' } },
			'readiness_check.deadline_seconds'
		],
		[{ ...base, snapshot: { data_paths: ['/'], keep: 3 } }, 'snapshot.data_paths.0'],
		[{ ...base, snapshot: { keep: 51 } }, 'snapshot.keep'],
		[{ ...base, quiesce: { quiesce: { argv: ['./pause.sh'] } } }, 'quiesce.resume'],
		[
			{ ...base, quiesce: { quiesce: { argv: ['./pause.sh'], surprise: 1 }, resume: { argv: ['./go.sh'] } } },
			'quiesce.quiesce'
		]
	] as const) {
		const res = await post('/api/roles', body, cookie(admin));
		expect(res.status, JSON.stringify(body)).toBe(400);
		if (field) expect(await fieldsOf(res), JSON.stringify(body)).toHaveProperty([field]);
	}
	expect(await count('code_roles')).toBe(before);

	expect((await post('/api/roles', base, bearer(tokens.operate))).status).toBe(403);
	const made = await post('/api/roles', { ...base, install_command: ['./install.sh', '--prod'] }, cookie(admin));
	expect(made.status).toBe(201);
	expect(await made.json()).toMatchObject({
		name: 'api-web',
		method: 'git',
		health: { type: 'units' },
		latest_commit: null
	});
	expect((await post('/api/roles', base, cookie(admin))).status).toBe(409);
	expect(
		(await post('/api/roles', { name: 'api-db', path: '/srv/db', units: ['db.service'] }, cookie(admin))).status
	).toBe(201);

	const patch = (json: unknown) => call('/api/roles/api-web', { method: 'PATCH', headers: cookie(admin), json });
	expect(await fieldsOf(await patch({ method: 'push' }))).toHaveProperty('source_repo');
	expect((await patch({ name: 'renamed' })).status).toBe(400);
	expect((await patch({ order: 5 })).status).toBe(200);
	expect(
		await fieldsOf(await patch({ quiesce: { quiesce: { argv: [] }, resume: { argv: ['./go.sh'] } } }))
	).toHaveProperty(['quiesce.quiesce.argv']);
	const withPreflight = await patch({
		readiness_check: { argv: ['./ready.sh'] },
		snapshot: { data_paths: ['/var/lib/web'], keep: 2, restore_command: ['./restore.sh'] },
		quiesce: { quiesce: { argv: ['./pause.sh'], deadline_seconds: 20 }, resume: { argv: ['./go.sh'] } }
	});
	expect(withPreflight.status).toBe(200);
	expect(await withPreflight.json()).toMatchObject({
		signatures: null,
		readiness_check: { argv: ['./ready.sh'], deadline_seconds: 30 },
		snapshot: { data_paths: ['/var/lib/web'], keep: 2, deadline_seconds: 600, restore_command: ['./restore.sh'] },
		quiesce: {
			quiesce: { argv: ['./pause.sh'], deadline_seconds: 20 },
			resume: { argv: ['./go.sh'], deadline_seconds: 60 }
		}
	});
	expect((await patch({ readiness_check: null, snapshot: null, quiesce: null })).status).toBe(200);
	expect((await call('/api/roles/NOPE', { headers: bearer(tokens.read) })).status).toBe(400);
	expect((await call('/api/roles/nope', { headers: bearer(tokens.read) })).status).toBe(404);
});

test('notify, mark-synced and Update All refuse bad input and change nothing; good calls do what docs/code-sync.md says', async () => {
	// Two nodes with the role (addresses never contacted: only plans are made here).
	for (const [i, name] of ['api-node-1', 'api-node-2'].entries()) {
		const res = await post(
			'/api/nodes',
			{
				name,
				host: `127.0.1.${250 + i}`,
				credential_id: credentialId,
				roles: ['api-web'],
				control_plane: i === 0,
				host_key_fingerprint: `SHA256:${'A'.repeat(42)}${i}`
			},
			cookie(admin)
		);
		expect(res.status).toBe(201);
		created.nodes.push((await res.json()).id);
	}
	const [commitsBefore, versionsBefore, runsBefore] = [
		await count('code_commits'),
		await count('node_code_versions'),
		await count('runs')
	];
	const operate = bearer(tokens.operate);
	const commit = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';

	for (const [body, field] of [
		[{ commit: 'xyz', changed_roles: ['api-web'] }, 'commit'],
		[{ commit: `${commit}; reboot`, changed_roles: ['api-web'] }, 'commit'],
		[{ commit, changed_roles: [] }, 'changed_roles'],
		[{ commit, changed_roles: ['no-such-role'] }, 'changed_roles'],
		[{ commit, changed_roles: ['API WEB'] }, 'changed_roles.0'],
		[{ commit, changed_roles: ['api-web'], branch: 'a b' }, 'branch'],
		[{ commit, changed_roles: ['api-web'], author: 'x\u0007y' }, 'author']
	] as const) {
		const res = await post('/api/code-source/notify', body, operate);
		expect(res.status, JSON.stringify(body)).toBe(400);
		expect(await fieldsOf(res), JSON.stringify(body)).toHaveProperty([field]);
	}
	expect(
		(await post('/api/code-source/notify', { commit, changed_roles: ['api-web'] }, bearer(tokens.read))).status
	).toBe(403);
	expect(await count('code_commits')).toBe(commitsBefore);

	// Older hooks spell the field commit_hash.
	const notified = await post('/api/code-source/notify', { commit_hash: commit, changed_roles: ['api-web'] }, operate);
	expect(notified.status).toBe(200);
	expect(await notified.json()).toEqual({ commit, roles: [{ role: 'api-web', new_commit: true, nodes_outdated: 2 }] });
	const outdated = await (await call('/api/nodes?role=api-web&status=OUTDATED', { headers: operate })).json();
	expect(outdated.items.map((n: { name: string }) => n.name)).toEqual(['api-node-1', 'api-node-2']);
	expect(outdated.items[0].versions).toEqual([
		expect.objectContaining({ role: 'api-web', commit: null, latest: commit, behind: true })
	]);

	for (const [body, field] of [
		[{ scope: { roles: ['no-such-role'] } }, 'scope.roles'],
		[{ scope: { nodes: ['nobody-here'] } }, 'scope.nodes'],
		[{ scope: { labels: ['=x'] } }, 'scope.labels.0'],
		[{ scope: { colour: 'red' } }, 'scope'],
		[{ dry_run: 'yes' }, 'dry_run'],
		[{ concurrency: 0 }, 'concurrency'],
		[{ max_failures: -1 }, 'max_failures'],
		[{ stop_on_first_failure: 'yes' }, 'stop_on_first_failure'],
		[{ expect: { 'api-web': 'not-a-commit' } }, 'expect.api-web']
	] as const) {
		const res = await post('/api/updates/trigger', body, operate);
		expect(res.status, JSON.stringify(body)).toBe(400);
		expect(await fieldsOf(res), JSON.stringify(body)).toHaveProperty([field]);
	}
	const dry = await post('/api/updates/trigger', { scope: { roles: ['api-web'] }, dry_run: true }, operate);
	expect(dry.status).toBe(200);
	const { plan } = await dry.json();
	expect(plan.targets).toEqual({ 'api-web': commit });
	expect(plan.nodes.map((n: { name: string; phase: number }) => `${n.phase}:${n.name}`)).toEqual([
		'0:api-node-1',
		'1:api-node-2'
	]);
	expect(plan.phases.map((p: { critical: boolean }) => p.critical)).toEqual([true, false]);
	// The operator saw another commit than the one the role has now: refused, nothing started.
	const moved = await post(
		'/api/updates/trigger',
		{ scope: { roles: ['api-web'] }, expect: { 'api-web': 'ffffffffffff' } },
		operate
	);
	expect(moved.status).toBe(409);
	expect(await fieldsOf(moved)).toHaveProperty('expect');
	expect(await count('runs')).toBe(runsBefore);

	const [n1, n2] = created.nodes;
	for (const [body, field] of [
		[{ role: 'api-web', commit: 'HEAD;rm -rf /' }, 'commit'],
		[{ role: 'api-web', commit: '--help' }, 'commit'],
		[{ role: 'no-such-role', commit }, 'role'],
		[{ role: 'api-db', commit }, 'role'],
		[{ role: 'api-web' }, 'commit']
	] as const) {
		const res = await post(`/api/nodes/${n1}/mark-synced`, body, operate);
		expect(res.status, JSON.stringify(body)).toBe(400);
		expect(await fieldsOf(res), JSON.stringify(body)).toHaveProperty([field]);
	}
	expect((await post('/api/nodes/not-a-uuid/mark-synced', { role: 'api-web', commit }, operate)).status).toBe(400);
	expect(await count('node_code_versions')).toBe(versionsBefore);

	for (const id of [n1, n2]) {
		const res = await post(`/api/nodes/${id}/mark-synced`, { role: 'api-web', commit }, operate);
		expect(res.status).toBe(200);
	}
	const synced = await (await call('/api/nodes?role=api-web&status=UP_TO_DATE', { headers: operate })).json();
	expect(synced.items).toHaveLength(2);
	const nothing = await post('/api/updates/trigger', { scope: { roles: ['api-web'] } }, operate);
	expect(nothing.status).toBe(409);
	expect(await count('runs')).toBe(runsBefore);
	// Every change above was audited.
	const audit =
		await db`select action from audit_log where action in ('code.notify', 'node.mark_synced', 'role.create')`;
	expect(new Set(audit.map((a) => a.action))).toEqual(new Set(['code.notify', 'node.mark_synced', 'role.create']));
});

test('a wrong notification is undone by pinning the role back to a commit notified before', async () => {
	const operate = bearer(tokens.operate);
	const good = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
	const upToDate = async () =>
		(await (await call('/api/nodes?role=api-web&status=UP_TO_DATE', { headers: operate })).json()).items.length;
	expect(await upToDate()).toBe(2);

	// Git abbreviates to as few as 4 hex digits; six are a commit id like any other.
	const wrong = await post('/api/code-source/notify', { commit: 'abc123', changed_roles: ['api-web'] }, operate);
	expect(await wrong.json()).toEqual({
		commit: 'abc123',
		roles: [{ role: 'api-web', new_commit: true, nodes_outdated: 2 }]
	});
	// Re-sending the good commit cannot move the role back: notifications are idempotent.
	const again = await post('/api/code-source/notify', { commit: good, changed_roles: ['api-web'] }, operate);
	expect((await again.json()).roles[0].new_commit).toBe(false);
	expect(await upToDate()).toBe(0);

	const commits = await count('code_commits');
	for (const [role, body, status, field] of [
		['api-web', { commit: 'ffff' }, 400, 'commit'],
		['api-web', { commit: 'a1b2; reboot' }, 400, 'commit'],
		['api-web', { commit: good, force: true }, 400, ''],
		['no-such-role', { commit: good }, 400, 'role'],
		['api-db', { commit: good }, 400, 'commit']
	] as const) {
		const res = await post(`/api/roles/${role}/pin`, body, operate);
		expect(res.status, JSON.stringify([role, body])).toBe(status);
		if (field) expect(await fieldsOf(res), JSON.stringify([role, body])).toHaveProperty([field]);
	}
	expect((await post('/api/roles/api-web/pin', { commit: good }, bearer(tokens.read))).status).toBe(403);
	expect(await upToDate()).toBe(0);

	const pinned = await post('/api/roles/api-web/pin', { commit: good.slice(0, 6) }, operate);
	expect(pinned.status).toBe(200);
	expect(await pinned.json()).toEqual({ role: 'api-web', commit: good, previous: 'abc123', nodes_outdated: 0 });
	expect(await upToDate()).toBe(2);
	// The history keeps both notifications; the audit log says who moved the target, and from where.
	expect(await count('code_commits')).toBe(commits);
	const [audit] =
		await db`select via, target_id, details from audit_log where action = 'code.pin' order by id desc limit 1`;
	expect(audit).toMatchObject({ target_id: 'api-web', details: { commit: good, previous: 'abc123' } });
	expect(audit!.via).toMatch(/^token:/);
});

test('a plan whose only nodes behind are left out says so, instead of calling them up to date', async () => {
	const operate = bearer(tokens.operate);
	// Behind on api-web (it runs nothing yet), but its host key was never accepted: it cannot be updated.
	const res = await post(
		'/api/nodes',
		{ name: 'api-node-unpinned', host: '127.0.1.252', credential_id: credentialId, roles: ['api-web'] },
		cookie(admin)
	);
	expect(res.status).toBe(201);
	const id = (await res.json()).id as string;
	created.nodes.push(id);
	const runs = await count('runs');

	const refused = await post('/api/updates/trigger', { scope: { nodes: [id] } }, operate);
	expect(refused.status).toBe(409);
	expect((await refused.json()).error.message).toBe(
		'Nothing can be updated now: api-node-unpinned (not updated: its host key is not accepted yet)'
	);
	expect(await count('runs')).toBe(runs);

	// The node page's "Update this node" shows the same plan: one reason, not two that contradict each other.
	const form = await call(`/nodes/${id}?/plan`, {
		method: 'POST',
		headers: { ...cookie(admin), origin: baseURL, 'x-sveltekit-action': 'true', accept: 'application/json' },
		body: new URLSearchParams()
	});
	const text = await form.text();
	expect(text).toContain('1 node is behind but left out');
	expect(text).toContain('Nothing can be updated now');
	expect(text).not.toContain('Nothing to update');
});

test('the post-commit hook notifies the roles a commit changed, from the path→role map', async () => {
	const repo = await mkdtemp(join(tmpdir(), 'flotilla-hook-'));
	const git = (...args: string[]) =>
		run('git', ['-C', repo, ...args], {
			env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' }
		});
	try {
		await git('init', '--quiet', '--initial-branch=main');
		await git('config', 'user.name', 'Hook Tester');
		await git('config', 'user.email', 'hook@flotilla.invalid');
		await writeFile(join(repo, '.flotilla-roles'), '# path prefix → roles\nweb/  api-web\nshared/ api-web api-db\n');
		await mkdir(join(repo, 'web'));
		await mkdir(join(repo, 'docs'));
		await writeFile(join(repo, 'docs/readme.txt'), 'no role\n');
		await git('add', '.');
		await git('commit', '--quiet', '-m', 'docs only');
		await writeFile(join(repo, 'web/app.txt'), 'v2\n');
		await git('add', '.');
		await git('commit', '--quiet', '-m', 'web: "quoted" message');
		const head = (await git('rev-parse', 'HEAD')).stdout.trim();
		const hook = await run('node', [join(process.cwd(), 'scripts/hooks/post-commit')], {
			cwd: repo,
			env: { ...process.env, FLOTILLA_URL: baseURL, FLOTILLA_TOKEN: tokens.operate }
		});
		expect(hook.stderr).toContain(`notified ${head.slice(0, 12)} for api-web`);
		const role = await (await call('/api/roles/api-web', { headers: bearer(tokens.read) })).json();
		expect(role).toMatchObject({
			latest_commit: head,
			latest_message: 'web: "quoted" message',
			latest_author: 'Hook Tester'
		});
		const db1 = await (await call('/api/roles/api-db', { headers: bearer(tokens.read) })).json();
		expect(db1.latest_commit).toBeNull();
		// Without a token it says why and leaves the commit alone (exit 0).
		const bare = await run('node', [join(process.cwd(), 'scripts/hooks/post-commit')], {
			cwd: repo,
			env: { ...process.env, FLOTILLA_URL: baseURL, FLOTILLA_TOKEN: '' }
		});
		expect(bare.stderr).toMatch(/not set; not notifying/);
	} finally {
		await rm(repo, { recursive: true, force: true });
	}
});
