import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { provisionSchema, provisioningDefinitionSchema } from '../../src/lib/schemas/provisioning';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes, type Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { saveDefinition } from '../../src/lib/server/provisioning/definitions';
import { startProvisioning } from '../../src/lib/server/provisioning/provision';
import { cloneOrigin, newOrigin } from '../../src/lib/server/sim/git';
import { nodePaths } from '../../src/lib/server/sim/paths';
import { startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh, type ShellCommand } from '../../src/lib/server/ssh/shell';
import { freshPglite } from '../support/databases';
import { waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost, type TestPackage } from '../testbed/testbed';

/**
 * Provisioning (docs/provisioning.md) run by the console's own engine against a real sshd testbed host and a
 * simulated one (the demo fleet's kind), scenario by scenario: the phases, their log, how the run ends, and what
 * is on the host afterwards (files with their modes and owners, the account, the units, the checkout), read
 * over SSH the same way on both, must agree, so that provisioning on the demo fleet shows what a real node does.
 */

type Which = 'real' | 'simulated';

let bed: Testbed;
let sim: SimulatedHost;
let real: TestHost;
let handle: DatabaseHandle;
let commit = '';
const nodeOf: Record<Which, Node> = {} as never;
const SECRET = `s3cr3t-${randomBytes(8).toString('hex')}`;

const PACKAGES: TestPackage[] = [
	{ name: 'libapi1', arch: 'amd64', installed: '(none)', candidate: '1.2-1', suites: ['bookworm'] }
];

const unit = `[Unit]
Description={{ role }} service

[Service]
User={{ user }}
EnvironmentFile={{ env_file }}
WorkingDirectory={{ workdir }}
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`;

async function onHost(which: Which, commands: ShellCommand[]) {
	const target =
		which === 'real'
			? { host: real.address, port: real.port, hostKeyFingerprint: real.hostKeyFingerprint }
			: { host: sim.address, port: sim.port, hostKeyFingerprint: sim.hostKeyFingerprint };
	const conn = await connect({ ...target, username: 'root', privateKey: bed.clientPrivateKey });
	try {
		const out: { command: string; exit: number | null; stdout: string }[] = [];
		for (const command of commands) {
			const r = await conn.exec(command);
			// Account ids are the machine's next free ones on the testbed host: the same fields, not the same numbers.
			const stdout = r.stdout.replace(/^([^:\n]*:x):\d+:(?:\d+:)?/gm, '$1:<id>:');
			out.push({ command: command.script, exit: r.exitCode, stdout });
		}
		return out;
	} finally {
		conn.close();
	}
}

/** What a role left on a host, read as an operator would. */
const factsOf = (role: string, user: string) => [
	sh`git -C ${`/opt/${role}`} rev-parse HEAD`,
	sh`test -d ${`/opt/${role}/.git`}`,
	sh`stat -c '%a %U %G' -- ${`/etc/${role}`} ${`/etc/${role}/${role}.env`}`,
	sh`cat -- ${`/etc/${role}/${role}.env`}`,
	sh`stat -c '%a %U %G' -- /etc/systemd/system/${`${role}.service`}`,
	sh`cat -- /etc/systemd/system/${`${role}.service`}`,
	sh`getent passwd ${user}`,
	sh`getent group ${user}`,
	sh`id -u -- ${user} >/dev/null`,
	sh`systemctl is-active -- ${`${role}.service`}`,
	sh`systemctl is-enabled -- ${`${role}.service`}`
];

/** Provisions one subject and says how it went: the phases, the log, the error, what the host holds. */
async function provisionOn(which: Which, body: unknown, facts: ShellCommand[]) {
	const node = nodeOf[which];
	const { runId } = await startProvisioning(systemActor, node.id, provisionSchema.parse(body));
	await waitForRun(runId, ['succeeded', 'failed'], 120_000);
	const run = await getRun(runId);
	const task = run.tasks[0]!;
	const log: string[] = [];
	for await (const line of readRunLog(runId)) log.push(`${line.step} ${line.stream}: ${line.text}`);
	return {
		state: run.state,
		steps: task.steps.map((s) => `${s.name}: ${s.state}`),
		error: task.error,
		// What differs by nature: when a phase ran before, and how many health probes fit in the health timeout
		// (a retry repeats the line before it).
		log: log
			.map((l) => l.replaceAll(node.name, '<node>').replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, '<time>'))
			.filter((l, i, all) => l !== all[i - 1]),
		host: await onHost(which, facts)
	};
}

async function agree(scenario: (which: Which) => Promise<Awaited<ReturnType<typeof provisionOn>>>) {
	const onReal = await scenario('real');
	const onSim = await scenario('simulated');
	expect(onSim).toEqual(onReal);
	return onReal;
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 1, firstHost: 68, roles: ['web'] });
	real = bed.hosts[0] as TestHost;
	handle = await freshPglite();
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	registerDomains();
	// The simulated host starts as the testbed host does: the web checkout, the same packages, and the web
	// origin reachable at the path the real host clones it from.
	sim = await startSimulatedHost({
		name: 'sim-provision',
		address: '127.0.1.69',
		authorizedKey: readFileSync(bed.clientPrivateKeyPath + '.pub', 'utf8')
	});
	const origin = newOrigin(
		'web',
		(await bed.originCommits('web')).map((sha) => ({ sha }))
	);
	sim.model.repos.set(nodePaths.repo('web'), cloneOrigin(origin));
	sim.model.remotes.set(bed.origins.web!, origin);
	sim.model.apt.packages = PACKAGES.map((p) => ({ ...p, suites: [...p.suites] }));
	await bed.setPackages(real, PACKAGES);
	commit = origin.commits.at(-1)!.sha;

	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const [r, s] = await db()
		.insert(nodes)
		.values(
			[
				{ name: real.name, host: real.address, port: real.port, hostKeyFingerprint: real.hostKeyFingerprint },
				{ name: sim.name, host: sim.address, port: sim.port, hostKeyFingerprint: sim.hostKeyFingerprint }
			].map((v) => ({ ...v, credentialId: cred.id, roles: [], hostKeyStatus: 'pinned' as const }))
		)
		.returning();
	nodeOf.real = r!;
	nodeOf.simulated = s!;
	for (const name of ['api', 'jobs']) {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name,
				path: `/opt/${name}`,
				units: [`${name}.service`],
				health: { type: 'units' },
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
				{ name: 'api-migrate.service', template: unit.replace('sleep infinity', 'true') },
				{ name: 'api.service', template: unit }
			]
		})
	);
	await saveDefinition(
		systemActor,
		'jobs',
		provisioningDefinitionSchema.parse({
			repo_url: bed.origins.web,
			env_template: 'QUEUE=jobs\n',
			unit_templates: [{ name: 'jobs.service', template: unit }]
		})
	);
	await startEngine({ concurrency: 4, leaseMs: 10_000, sweepMs: 1_000, shutdownGraceMs: 0 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await sim?.stop();
	await bed?.stop();
});

describe('a simulated node is provisioned as a real one is', () => {
	it('a fresh node: clone, packages, account, env folder and file, units enabled and started, healthy', async () => {
		const outcome = await agree((which) => provisionOn(which, { role: 'api' }, factsOf('api', 'apisvc')));
		expect(outcome.state).toBe('succeeded');
		expect(outcome.steps).toEqual([
			'clean: succeeded',
			'deploy: succeeded',
			'system_deps: succeeded',
			'secrets: succeeded',
			'services: succeeded',
			'verify: succeeded'
		]);
		const host = Object.fromEntries(outcome.host.map((f) => [f.command, f]));
		expect(host[sh`git -C ${'/opt/api'} rev-parse HEAD`.script]!.stdout).toBe(`${commit}\n`);
		expect(host[sh`stat -c '%a %U %G' -- ${'/etc/api'} ${'/etc/api/api.env'}`.script]!.stdout).toBe(
			'750 root apisvc\n640 root apisvc\n'
		);
		expect(host[sh`cat -- ${'/etc/api/api.env'}`.script]!.stdout).toBe(
			`ROLE=api\nDATABASE_URL=postgres://api:${SECRET}@db/api\n`
		);
		expect(host[sh`getent passwd ${'apisvc'}`.script]!.stdout).toBe('apisvc:x:<id>::/nonexistent:/usr/sbin/nologin\n');
		expect(host[sh`systemctl is-active -- ${'api.service'}`.script]!.stdout).toBe('active\n');
		expect(host[sh`systemctl is-enabled -- ${'api.service'}`.script]!.stdout).toBe('enabled\n');
		expect(outcome.log.some((l) => l.includes(SECRET))).toBe(false);
	}, 300_000);

	it('provisioning again changes nothing, and says so phase by phase', async () => {
		const outcome = await agree((which) => provisionOn(which, { role: 'api' }, factsOf('api', 'apisvc')));
		expect(outcome.state).toBe('succeeded');
		expect(outcome.log).toContain(`deploy engine: api: already on ${commit.slice(0, 12)}`);
		expect(outcome.log).toContain('secrets engine: api: /etc/api/api.env unchanged (mode 640, root:apisvc)');
		expect(outcome.log.filter((l) => / (started|restarted|installed)$/.test(l))).toEqual([]);
	}, 300_000);

	it('a unit that does not come up fails the services phase with the same reason, and verify never runs', async () => {
		const outcome = await agree(async (which) => {
			if (which === 'real') await bed.setFault(real, 'fail-health');
			else sim.model.faults.failHealth = true;
			try {
				return await provisionOn(which, { role: 'api', phases: ['services', 'verify'] }, []);
			} finally {
				if (which === 'real') await bed.clearFaults(real);
				else sim.model.faults = {};
			}
		});
		expect(outcome.state).toBe('failed');
		expect(outcome.steps).toContain('services: failed');
		expect(outcome.steps.some((s) => s.startsWith('verify'))).toBe(false);
		expect(outcome.error).toMatch(/api is unhealthy after 3 s: systemctl is-active api.service failed/);
	}, 300_000);

	it('provisioning another role cleans what the first left: units, folders, checkout and account', async () => {
		const outcome = await agree((which) =>
			provisionOn(which, { role: 'jobs' }, [...factsOf('api', 'apisvc'), ...factsOf('jobs', 'jobs')])
		);
		expect(outcome.state).toBe('succeeded');
		const host = Object.fromEntries(outcome.host.map((f) => [f.command, f]));
		expect(host[sh`test -d ${'/opt/api/.git'}`.script]!.exit).toBe(1);
		expect(host[sh`id -u -- ${'apisvc'} >/dev/null`.script]!.exit).toBe(1);
		expect(host[sh`systemctl is-active -- ${'api.service'}`.script]!.stdout).toBe('inactive\n');
		expect(host[sh`systemctl is-enabled -- ${'api.service'}`.script]!.stdout).toBe('disabled\n');
		expect(host[sh`stat -c '%a %U %G' -- ${'/etc/jobs'} ${'/etc/jobs/jobs.env'}`.script]!.stdout).toBe(
			'750 root jobs\n640 root jobs\n'
		);
		expect(host[sh`systemctl is-active -- ${'jobs.service'}`.script]!.stdout).toBe('active\n');
	}, 300_000);
});
