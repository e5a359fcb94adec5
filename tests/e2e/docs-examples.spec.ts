import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { baseURL, call, cookie, loadTokens, signInAs } from './support/console';

/**
 * Every shell example in docs/api.md, docs/code-sync.md and the runbooks (docs/runbooks/) runs here as written:
 * its text goes to bash unchanged but for the documented placeholders (`<node id>`, `<run id>`, `<commit>`,
 * `$TOKEN`, `$CRED`) and the console's address. Nothing adds an Origin header or changes a content type, so the docs cannot promise
 * a call that a script would see refused. A new example without an expectation here fails the test.
 */

const run = promisify(execFile);
const runbooks = ['code-update', 'system-update', 'rotate-certs', 'rotate-ssh-keys', 'deploy-new-node'];
const docs = ['docs/api.md', 'docs/code-sync.md', ...runbooks.map((r) => `docs/runbooks/${r}.md`)];

/** The commands of every ```sh block: continuation lines joined, comments and `VAR=value` lines left out. */
function documentedCommands(file: string): string[] {
	const text = readFileSync(file, 'utf8');
	const commands: string[] = [];
	for (const [, block] of text.matchAll(/```sh\n([\s\S]*?)```/g)) {
		for (const line of block!.replace(/\\\n\s*/g, '').split('\n')) {
			const command = line.trim();
			if (command && !command.startsWith('#') && !/^[A-Z_]+=\S*(\s+#.*)?$/.test(command)) commands.push(command);
		}
	}
	return commands;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each example reads its answer as the docs show it
type Answer = { status: number; body: string; json: () => any };
type Example = { match: RegExp; check: (answer: Answer) => void | Promise<void> };

let tokens: ReturnType<typeof loadTokens>;
let admin: string;
let cwd: string;
let credentialId: string;
const nodeIds: string[] = [];
const commit = randomBytes(20).toString('hex');
let runId = '';
let newNodeId = '';

test.beforeAll(async () => {
	tokens = loadTokens();
	admin = await signInAs('admin');
	cwd = await mkdtemp(join(tmpdir(), 'flotilla-docs-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(cwd, 'key')]);
	const cred = await call('/api/credentials', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: `docs-examples-${Date.now()}`, private_key: await readFile(join(cwd, 'key'), 'utf8') }
	});
	expect(cred.status).toBe(201);
	credentialId = (await cred.json()).id;
	const role = await call('/api/roles', {
		method: 'POST',
		headers: cookie(admin),
		json: { name: 'web', path: '/srv/web', units: ['web.service'] }
	});
	expect(role.status).toBe(201);
	// Nothing listens on these addresses: the check the example starts fails at once, as a real run may.
	for (const i of [0, 1]) {
		const res = await call('/api/nodes', {
			method: 'POST',
			headers: cookie(admin),
			json: {
				name: `docs-web-${i}`,
				host: `127.0.1.${246 + i}`,
				credential_id: credentialId,
				roles: ['web'],
				host_key_fingerprint: `SHA256:${'D'.repeat(42)}${i}`
			}
		});
		expect(res.status).toBe(201);
		nodeIds.push((await res.json()).id);
	}
	await writeFile(join(cwd, 'hosts.ini'), '[docs_db]\ndocs-db1 ansible_host=127.0.1.245\n');
});

test.afterAll(async () => {
	if (runId) await call(`/api/runs/${runId}/cancel`, { method: 'POST', headers: cookie(admin) });
	if (newNodeId) await call(`/api/nodes/${newNodeId}`, { method: 'DELETE', headers: cookie(admin) });
	for (const id of nodeIds) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: cookie(admin) });
	await call('/api/roles/web', { method: 'DELETE', headers: cookie(admin) });
	await call(`/api/credentials/${credentialId}`, { method: 'DELETE', headers: cookie(admin) });
	await rm(cwd, { recursive: true, force: true });
});

/** What each documented command must answer, in the order the docs give them. */
const examples: Example[] = [
	{
		match: /\/api\/updates\/status\?recent=5'$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const { updating, runs, rollouts } = a.json();
			expect(updating).toBe(runs.active.length + rollouts.active.length > 0);
			expect(runs.recent.length).toBeLessThanOrEqual(5);
			for (const r of runs.active) expect(['queued', 'running', 'paused']).toContain(r.state);
			for (const r of runs.recent) expect(['succeeded', 'failed', 'cancelled']).toContain(r.state);
		}
	},
	{
		match: /inventory\/import\?credential_id=\$CRED&dry_run=1/,
		check: (a) => {
			expect(a.status).toBe(200);
			expect(a.json()).toMatchObject({ dry_run: true, format: 'ini', created: 1, errors: [] });
		}
	},
	{
		match: /\/api\/version$/,
		check: (a) => {
			expect(a.status).toBe(200);
			expect(a.json()).toMatchObject({ name: 'flotilla', database: 'postgres' });
		}
	},
	{
		match: /\/api\/audit\?action=user\.&limit=20'$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const { items } = a.json();
			expect(items.length).toBeGreaterThan(0);
			expect(items.length).toBeLessThanOrEqual(20);
			for (const row of items) expect(row.action).toMatch(/^user\./);
		}
	},
	{
		match: /"kind": "check".*\/api\/runs$/,
		check: (a) => {
			expect(a.status).toBe(202);
			runId = a.json().run_id;
			expect(runId).toMatch(/^[0-9a-f-]{36}$/);
		}
	},
	{
		match: /\/api\/runs\/<run id>\/events$/,
		check: (a) => {
			expect(a.status).toBe(200);
			// The stream starts at the run's first event and stays open; the harness stops reading after a while.
			const events = [...a.body.matchAll(/^event: (\S+)\ndata: (.*)$/gm)].map((m) => [m[1], JSON.parse(m[2]!)]);
			expect(events.length).toBeGreaterThan(0);
			expect(events.every(([, e]) => e.run_id === runId)).toBe(true);
			// The check of two addresses where nothing listens ends within the stream's time: its end is in it.
			expect(events.some(([type, e]) => type === 'run.state' && e.data.ended)).toBe(true);
		}
	},
	{
		match: /\/api\/code-source\/notify$/,
		check: (a) => {
			expect(a.status).toBe(200);
			expect(a.json()).toEqual({ commit, roles: [{ role: 'web', new_commit: true, nodes_outdated: 2 }] });
		}
	},
	{
		match: /"dry_run": true.*\/api\/updates\/trigger$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const { plan } = a.json();
			// The check the api.md example ran found both nodes unreachable (nothing listens there): the plan
			// leaves them out, saying why, and so has nothing to deploy.
			expect(plan.nodes).toEqual([]);
			expect(plan.targets).toEqual({});
			const excluded = plan.excluded.filter((n: { id: string }) => nodeIds.includes(n.id));
			expect(excluded.map((n: { id: string }) => n.id).sort()).toEqual([...nodeIds].sort());
			for (const n of excluded) expect(n.reason).toMatch(/unreachable/);
		}
	},
	// docs/runbooks/code-update.md
	{
		match: /-X POST http:\/\/localhost:3000\/api\/code-source\/notify -H/,
		check: (a) => {
			expect(a.status).toBe(200);
			// The commit code-sync.md's example notified already: known, and both web nodes still lag behind it.
			expect(a.json()).toEqual({ commit, roles: [{ role: 'web', new_commit: false, nodes_outdated: 2 }] });
		}
	},
	{
		match: /-X POST http:\/\/localhost:3000\/api\/updates\/trigger -H/,
		check: (a) => {
			expect(a.status).toBe(200);
			const { plan } = a.json();
			expect(plan.nodes).toEqual([]);
			const excluded = plan.excluded.filter((n: { id: string }) => nodeIds.includes(n.id));
			expect(excluded.map((n: { id: string }) => n.id).sort()).toEqual([...nodeIds].sort());
		}
	},
	{
		match: /\/api\/runs\/<run id>$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const run = a.json();
			expect(run).toMatchObject({ id: runId, kind: 'check' });
			expect(run.tasks.map((t: { node_id: string }) => t.node_id).sort()).toEqual([...nodeIds].sort());
		}
	},
	{
		match: /\/api\/nodes\?role=web&status=OUTDATED'$/,
		check: (a) => {
			expect(a.status).toBe(200);
			for (const n of a.json().items) expect(n.status).toBe('OUTDATED');
		}
	},
	{
		match: /\/api\/nodes\/<node id>\/mark-synced$/,
		check: (a) => {
			expect(a.status).toBe(200);
			expect(JSON.stringify(a.json())).toContain(commit);
		}
	},
	// docs/runbooks/system-update.md
	{
		match: /\/api\/updates\/system\/scan$/,
		check: (a) => {
			expect(a.status).toBe(202);
			expect(a.json().run_id).toMatch(/^[0-9a-f-]{36}$/);
		}
	},
	{
		match: /\/api\/updates\/system$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const ids = a.json().items.map((n: { node_id: string }) => n.node_id);
			for (const id of nodeIds) expect(ids).toContain(id);
		}
	},
	{
		match: /"reboot": "window".*\/api\/updates\/system\/<node id>$/,
		check: (a) => {
			// A node never scanned: the update's own plan step scans it (and here finds it unreachable).
			expect(a.status).toBe(202);
			expect(a.json().run_id).toMatch(/^[0-9a-f-]{36}$/);
		}
	},
	// docs/runbooks/rotate-certs.md
	{
		match: /\/api\/security\/certificates$/,
		check: (a) => {
			expect(a.status).toBe(200);
			expect(Array.isArray(a.json().items)).toBe(true);
		}
	},
	{
		match: /"expiring_within_days": 30, "dry_run": true.*\/certificates\/rotate$/,
		check: (a) => {
			expect(a.status).toBe(200);
			// No role of this console defines certificates: a plan with nothing to rotate.
			expect(a.json()).toEqual({ plan: { nodes: [], phases: [], excluded: [], warnings: [] } });
		}
	},
	// docs/runbooks/rotate-ssh-keys.md
	{
		match: /"dry_run": true.*\/api\/ssh-keys\/rotate$/,
		check: (a) => {
			expect(a.status).toBe(200);
			const hosts = a.json().hosts as { node_id: string; reachable: boolean; error: string }[];
			expect(hosts.map((h) => h.node_id).sort()).toEqual([...nodeIds].sort());
			for (const h of hosts) expect(h).toMatchObject({ reachable: false, error: expect.stringMatching(/unreachable/) });
		}
	},
	// docs/runbooks/deploy-new-node.md
	{
		match: /"name": "web-new".*\/api\/nodes$/,
		check: (a) => {
			expect(a.status).toBe(201);
			expect(a.json()).toMatchObject({
				name: 'web-new',
				host: '127.0.1.244',
				roles: ['web'],
				credential_id: credentialId
			});
			newNodeId = a.json().id;
		}
	},
	{
		match: /\/api\/nodes\/<node id>\/check$/,
		check: (a) => {
			// `<node id>` is a fixture node with a pinned key (nothing answers at web-new's address to pin its key).
			expect(a.status).toBe(200);
			expect(a.json()).toMatchObject({ reachable: false, host_key_status: 'pinned' });
		}
	},
	{
		match: /\/api\/nodes\/<node id>\/provision$/,
		check: (a) => {
			expect(a.status).toBe(202);
			expect(a.json().run_id).toMatch(/^[0-9a-f-]{36}$/);
		}
	}
];

/** Runs one documented command through bash; a `curl` wrapper reads the status and bounds streams. */
async function runDocumented(command: string): Promise<Answer> {
	const script = command
		.replaceAll('http://localhost:3000', baseURL)
		.replaceAll('<node id>", "<node id>', nodeIds.join('", "'))
		.replaceAll('<node id>', nodeIds[0]!)
		.replaceAll('<run id>', runId)
		.replaceAll('<commit>', commit);
	expect(script, 'a placeholder this test does not fill').not.toMatch(/<[a-z ]+>/);
	const wrapper = `curl() { command curl --max-time 5 -w '\\n%{http_code}' "$@"; }\n`;
	const { stdout } = await run('bash', ['-c', wrapper + script + ' || [ $? = 28 ]'], {
		cwd,
		env: { ...process.env, TOKEN: tokens.admin, CRED: credentialId }
	});
	const cut = stdout.lastIndexOf('\n');
	const body = stdout.slice(0, cut);
	return { status: Number(stdout.slice(cut + 1)), body, json: () => JSON.parse(body) };
}

test('every shell example in the docs runs as written and answers as documented', async () => {
	const commands = docs.flatMap(documentedCommands);
	const unmatched = commands.filter((c) => examples.filter((e) => e.match.test(c)).length !== 1);
	expect(unmatched, 'documented commands with no (or more than one) expectation here').toEqual([]);
	const unused = examples.filter((e) => !commands.some((c) => e.match.test(c)));
	expect(
		unused.map((e) => String(e.match)),
		'expectations whose example left the docs'
	).toEqual([]);

	for (const command of commands) {
		const answer = await runDocumented(command);
		await test.step(command, () => examples.find((e) => e.match.test(command))!.check(answer));
	}
});
