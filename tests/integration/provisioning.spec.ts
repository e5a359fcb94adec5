import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { provisionSchema, provisioningDefinitionSchema } from '../../src/lib/schemas/provisioning';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { nodeCodeVersions, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { ServiceError } from '../../src/lib/server/errors';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { provisioningOfNode, saveDefinition } from '../../src/lib/server/provisioning/definitions';
import { startProvisioning } from '../../src/lib/server/provisioning/provision';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Provisioning on real sshd hosts (127.0.1.150–152): what the tests check is read on the hosts themselves
 * (over the test's own ssh client) and in every table of the database, not taken from what the console believes.
 */

const run = promisify(execFile);
const SECRET = `s3cr3t-${randomBytes(12).toString('hex')}`;
const SECRET_2 = `n3w-${randomBytes(12).toString('hex')}`;

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const idOf = new Map<string, string>();
let commit = '';

/** Runs a command on a test host as root through OpenSSH, outside the console. */
async function onHost(host: TestHost, command: string): Promise<string> {
	const { stdout } = await run('ssh', [
		'-i',
		bed.clientPrivateKeyPath,
		'-o',
		`UserKnownHostsFile=${bed.knownHostsPath}`,
		'-o',
		'StrictHostKeyChecking=yes',
		'-o',
		'BatchMode=yes',
		`root@${host.address}`,
		command
	]);
	return stdout.trim();
}

async function provision(host: TestHost, body: unknown) {
	const { runId } = await startProvisioning(systemActor, idOf.get(host.name)!, provisionSchema.parse(body));
	await waitForRun(runId, ['succeeded', 'failed'], 120_000);
	const r = await getRun(runId);
	// A run that failed where the test expects none says why in the test's output.
	if (r.state !== 'succeeded') for await (const line of readRunLog(runId)) console.log(`${line.step}: ${line.text}`);
	return r;
}

/** Every text of every row of every table the console's database holds, as one string per table. */
async function everyTableText(): Promise<Map<string, string>> {
	const tables = (await db().execute(
		sql`select table_schema, table_name from information_schema.tables
		    where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`
	)) as unknown as { table_schema: string; table_name: string }[];
	const out = new Map<string, string>();
	for (const t of tables) {
		const rows = (await db().execute(
			sql.raw(`select t::text as row from "${t.table_schema}"."${t.table_name}" t`)
		)) as unknown as { row: string }[];
		out.set(`${t.table_schema}.${t.table_name}`, rows.map((r) => r.row).join('\n'));
	}
	return out;
}

const apiUnit = `[Unit]
Description={{ role }} service

[Service]
User={{ user }}
EnvironmentFile={{ env_file }}
WorkingDirectory={{ workdir }}
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`;

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 150, roles: ['web'] });
	pg = await freshPostgres('flotilla_provisioning');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				roles: [],
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id, name: nodes.name });
	for (const r of rows) idOf.set(r.name, r.id);
	// Both roles deploy the same repository; its health check asks the role's own unit and env file.
	commit = await bed.addCommit('web', {
		message: 'health check',
		files: {
			'healthcheck.sh': '#!/bin/sh\nsystemctl is-active --quiet "$1" && test -s "/etc/$1/$1.env"\n'
		}
	});
	for (const name of ['api', 'jobs']) {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name,
				path: `/opt/${name}`,
				units: [`${name}.service`],
				health: { type: 'command', command: ['sh', 'healthcheck.sh', name] },
				health_timeout_seconds: 3
			})
		);
	}
	await notifyCommit(systemActor, { commit, changed_roles: ['api', 'jobs'] });
	await saveDefinition(
		systemActor,
		'api',
		provisioningDefinitionSchema.parse({
			repo_url: bed.origins.web,
			packages: ['libapi1'],
			service_user: 'apisvc',
			env_template: 'ROLE={{ role }}\nDATABASE_URL=postgres://api:{{ secret.DB_PASSWORD }}@db/api\n',
			secrets: { DB_PASSWORD: SECRET },
			unit_templates: [
				{ name: 'api-migrate.service', template: apiUnit.replace('sleep infinity', 'true') },
				{ name: 'api.service', template: apiUnit }
			]
		})
	);
	await saveDefinition(
		systemActor,
		'jobs',
		provisioningDefinitionSchema.parse({
			repo_url: bed.origins.web,
			env_template: 'QUEUE=jobs\n',
			unit_templates: [{ name: 'jobs.service', template: apiUnit }]
		})
	);
	for (const host of bed.hosts) {
		await bed.setPackages(host, [
			{ name: 'libapi1', arch: 'amd64', installed: '(none)', candidate: '1.2-1', suites: ['bookworm'] }
		]);
	}
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('Provisioning on real hosts', () => {
	it('provisions a fresh host: code, packages, account, env file 640 root:apisvc, units started in order, healthy', async () => {
		const host = bed.hosts[0]!;
		expect(await onHost(host, 'test -e /opt/api || echo absent')).toBe('absent');
		const r = await provision(host, { role: 'api' });
		expect(r.state).toBe('succeeded');
		expect(r.tasks[0]!.steps.map((s) => s.name)).toEqual([
			'clean',
			'deploy',
			'system_deps',
			'secrets',
			'services',
			'verify'
		]);

		expect(await onHost(host, 'git -C /opt/api rev-parse HEAD')).toBe(commit);
		expect(await onHost(host, 'stat -c "%a %U %G" /etc/api/api.env')).toBe('640 root apisvc');
		expect(await onHost(host, 'stat -c "%a %U %G" /etc/api')).toBe('750 root apisvc');
		expect(await onHost(host, 'cat /etc/api/api.env')).toBe(`ROLE=api\nDATABASE_URL=postgres://api:${SECRET}@db/api`);
		expect(await onHost(host, 'getent passwd apisvc | cut -d: -f7')).toBe('/usr/sbin/nologin');
		expect(await onHost(host, 'systemctl is-active api; systemctl is-enabled api')).toBe('active\nenabled');
		expect(await onHost(host, 'grep -c "EnvironmentFile=/etc/api/api.env" /etc/systemd/system/api.service')).toBe('1');
		expect((await bed.packages(host)).find((p) => p.name === 'libapi1')?.installed).toBe('1.2-1');

		// Started in the role's start order: the migration unit before the service.
		const log = await bed.commandLog(host);
		const starts = log.filter((l) => / systemctl (start|restart) /.test(l)).map((l) => l.split(' ').at(-1));
		expect(starts).toEqual(['api-migrate.service', 'api.service']);
		expect(log.some((l) => l.includes('apt-get') && l.includes('install') && l.includes('libapi1'))).toBe(true);

		// The account and the env folder are this host's only (the real machine and the other hosts have neither).
		expect(await onHost(bed.hosts[1]!, 'id -u apisvc || echo none')).toContain('none');

		const [version] = await db()
			.select()
			.from(nodeCodeVersions)
			.where(and(eq(nodeCodeVersions.nodeId, idOf.get(host.name)!), eq(nodeCodeVersions.role, 'api')));
		expect(version?.commit).toBe(commit);
		const [node] = await db()
			.select()
			.from(nodes)
			.where(eq(nodes.id, idOf.get(host.name)!));
		expect(node!.roles).toEqual(['api']);
	});

	it('the secret is nowhere in clear: not in any table (events, audit, runs included), not in the command log', async () => {
		const texts = await everyTableText();
		expect(texts.size).toBeGreaterThan(10);
		expect(texts.get('public.events')).toContain('api.env');
		for (const [table, text] of texts) expect(text.includes(SECRET), table).toBe(false);
		// It is there, sealed: the definition row holds it.
		expect(texts.get('public.role_provisioning')).toContain('DB_PASSWORD');
		for (const line of await bed.commandLog(bed.hosts[0]!)) expect(line).not.toContain(SECRET);
	});

	it('re-provisioning changes nothing: same files, no restart, no package install, no new account', async () => {
		const host = bed.hosts[0]!;
		const files = '/etc/api/api.env /etc/systemd/system/api.service /etc/systemd/system/api-migrate.service';
		const before = await onHost(host, `stat -c "%i %Y %a %U %G" ${files}`);
		const logBefore = (await bed.commandLog(host)).length;
		const r = await provision(host, { role: 'api' });
		expect(r.state).toBe('succeeded');
		expect(await onHost(host, `stat -c "%i %Y %a %U %G" ${files}`)).toBe(before);
		const after = (await bed.commandLog(host)).slice(logBefore);
		expect(after.filter((l) => / systemctl (start|restart|enable|daemon-reload)/.test(l))).toEqual([]);
		expect(after.filter((l) => / apt-get /.test(l))).toEqual([]);
		expect(await onHost(host, 'git -C /opt/api rev-parse HEAD')).toBe(commit);
	});

	it('a failing phase stops the run with its reason; running it again completes the rest', async () => {
		const host = bed.hosts[1]!;
		await bed.setFault(host, 'fail-step', 'systemctl');
		const failed = await provision(host, { role: 'api' });
		expect(failed.state).toBe('failed');
		const task = failed.tasks[0]!;
		expect(task.error).toMatch(/systemctl/);
		const failedStep = task.steps.find((s) => s.state === 'failed');
		expect(failedStep?.name).toBe('services');
		expect(task.steps.map((s) => s.name)).not.toContain('verify');
		const [state] = await provisioningOfNode(idOf.get(host.name)!);
		expect(state).toMatchObject({ role: 'api', provisionedAt: null, lastRunId: failed.id });
		expect(state!.lastError).toMatch(/systemctl/);
		// What came before the failure is in place.
		expect(await onHost(host, 'stat -c "%a %U %G" /etc/api/api.env')).toBe('640 root apisvc');

		await bed.clearFaults(host);
		const again = await provision(host, { role: 'api' });
		expect(again.state).toBe('succeeded');
		expect(await onHost(host, 'systemctl is-active api')).toBe('active');
		// System dependencies were done by the first run: the second does not install them again.
		const installs = (await bed.commandLog(host)).filter((l) => / apt-get .*install/.test(l));
		expect(installs).toHaveLength(1);
		const [done] = await provisioningOfNode(idOf.get(host.name)!);
		expect(done).toMatchObject({ role: 'api', lastError: null, lastRunId: again.id });
		expect(done!.provisionedAt).not.toBeNull();
	});

	it('a phase list runs only those phases', async () => {
		const host = bed.hosts[1]!;
		const logBefore = (await bed.commandLog(host)).length;
		const r = await provision(host, { role: 'api', phases: ['secrets', 'verify'] });
		expect(r.state).toBe('succeeded');
		const after = (await bed.commandLog(host)).slice(logBefore);
		expect(after.filter((l) => / systemctl (start|restart|enable)/.test(l))).toEqual([]);
	});

	it('Code Sync update carries a changed secret and unit to a provisioned node, and restarts it', async () => {
		const host = bed.hosts[0]!;
		await saveDefinition(
			systemActor,
			'api',
			provisioningDefinitionSchema.parse({
				secrets: { DB_PASSWORD: SECRET_2 },
				unit_templates: [
					{ name: 'api-migrate.service', template: apiUnit.replace('sleep infinity', 'true') },
					{ name: 'api.service', template: apiUnit.replace('Description=', 'Description=v2 ') }
				]
			})
		);
		const next = await bed.addCommit('web', { message: 'next' });
		await notifyCommit(systemActor, { commit: next, changed_roles: ['api'] });
		const logBefore = (await bed.commandLog(host)).length;
		const { runId } = await triggerUpdate(systemActor, { scope: { nodes: [host.name] }, dry_run: false });
		const r = await waitForRun(runId!, ['succeeded', 'failed'], 120_000);
		expect(r.state).toBe('succeeded');
		expect(await onHost(host, 'git -C /opt/api rev-parse HEAD')).toBe(next);
		expect(await onHost(host, 'cat /etc/api/api.env')).toContain(SECRET_2);
		expect(await onHost(host, 'stat -c "%a %U %G" /etc/api/api.env')).toBe('640 root apisvc');
		expect(await onHost(host, 'grep -c "Description=v2" /etc/systemd/system/api.service')).toBe('1');
		const after = (await bed.commandLog(host)).slice(logBefore);
		expect(after.some((l) => / systemctl daemon-reload/.test(l))).toBe(true);
		expect(after.some((l) => / systemctl restart .*api/.test(l))).toBe(true);
		// Updates skip clean and system dependencies.
		expect(after.filter((l) => / apt-get /.test(l))).toEqual([]);
		for (const [table, text] of await everyTableText()) expect(text.includes(SECRET_2), table).toBe(false);
	});

	it('provisioning for a different role cleans what the old one left', async () => {
		const host = bed.hosts[0]!;
		const r = await provision(host, { role: 'jobs' });
		expect(r.state).toBe('succeeded');
		expect(
			await onHost(
				host,
				'for p in /opt/api /etc/api /etc/systemd/system/api.service /etc/systemd/system/api-migrate.service; do test -e $p && echo "left $p"; done; id -u apisvc 2>/dev/null || echo "no apisvc"'
			)
		).toBe('no apisvc');
		expect(await onHost(host, 'systemctl is-active api; systemctl is-enabled api; true')).toBe('inactive\ndisabled');
		expect(await onHost(host, 'systemctl is-active jobs; stat -c "%a %U %G" /etc/jobs/jobs.env')).toBe(
			'active\n640 root jobs'
		);
		const [node] = await db()
			.select()
			.from(nodes)
			.where(eq(nodes.id, idOf.get(host.name)!));
		expect(node!.roles).toEqual(['jobs']);

		// Cleaning a clean node changes nothing.
		const logBefore = (await bed.commandLog(host)).length;
		expect((await provision(host, { role: 'jobs', phases: ['clean'] })).state).toBe('succeeded');
		expect((await bed.commandLog(host)).slice(logBefore)).toEqual([]);
	});

	it('provisions a push role on a fresh host: the release is uploaded and `current` points at it', async () => {
		const host = bed.hosts[2]!;
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'static',
				method: 'push',
				path: '/opt/static',
				source_repo: join(bed.dir, 'origins', 'web.work'),
				units: ['static.service'],
				health: { type: 'command', command: ['sh', 'healthcheck.sh', 'static'] },
				health_timeout_seconds: 3
			})
		);
		await notifyCommit(systemActor, { commit, changed_roles: ['static'] });
		await saveDefinition(
			systemActor,
			'static',
			provisioningDefinitionSchema.parse({
				env_template: 'ROOT={{ workdir }}\n',
				unit_templates: [{ name: 'static.service', template: apiUnit }]
			})
		);
		const r = await provision(host, { role: 'static' });
		expect(r.state).toBe('succeeded');
		expect(await onHost(host, 'readlink /opt/static/current; cat /etc/static/static.env')).toBe(
			`releases/${commit}\nROOT=/opt/static/current`
		);
		expect(await onHost(host, 'grep WorkingDirectory /etc/systemd/system/static.service')).toBe(
			'WorkingDirectory=/opt/static/current'
		);
	});

	it('refuses bad input naming the field: unknown role, phases out of order, hostile names and paths', async () => {
		const nodeId = idOf.get(bed.hosts[2]!.name)!;
		const refused = await startProvisioning(systemActor, nodeId, { role: 'nosuch' }).catch((e: unknown) => e);
		expect(refused).toBeInstanceOf(ServiceError);
		expect((refused as ServiceError).fields).toHaveProperty('role');

		const order = provisionSchema.safeParse({ role: 'api', phases: ['secrets', 'deploy'] });
		expect(order.success).toBe(false);
		expect(order.error!.issues[0]!.path).toEqual(['phases']);

		const hostile: [unknown, string][] = [
			[{ unit_templates: [{ name: '../../etc/passwd', template: 'x' }] }, 'unit_templates.0.name'],
			[{ unit_templates: [{ name: 'a/b.service', template: 'x' }] }, 'unit_templates.0.name'],
			[
				{ unit_templates: [{ name: 'x.service', template: 'P={{ secret.DB_PASSWORD }}' }] },
				'unit_templates.0.template'
			],
			[{ env_template: 'X={{ ../../etc/shadow }}' }, 'env_template'],
			[{ repo_url: '--upload-pack=touch /tmp/pwned' }, 'repo_url'],
			[{ repo_url: '/opt/../etc' }, 'repo_url'],
			[{ packages: ['-oAPT::Update::Pre-Invoke::=id'] }, 'packages.0'],
			[{ service_user: 'root' }, 'service_user'],
			[{ secrets: { DB_PASSWORD: 'a\nEVIL=1' } }, 'secrets.DB_PASSWORD'],
			[{ secrets: { 'bad name': 'x' } }, 'secrets.bad name']
		];
		for (const [input, field] of hostile) {
			const parsed = provisioningDefinitionSchema.safeParse(input);
			expect(parsed.success, field).toBe(false);
			expect(
				parsed.error!.issues.map((i) => i.path.join('.')),
				JSON.stringify(input)
			).toContain(field);
		}
		// An env template naming a secret that is not set is refused whole.
		const missing = await saveDefinition(
			systemActor,
			'jobs',
			provisioningDefinitionSchema.parse({ env_template: 'A={{ secret.NOPE }}' })
		).catch((e: unknown) => e);
		expect((missing as ServiceError).fields).toHaveProperty('env_template');
	});
});
