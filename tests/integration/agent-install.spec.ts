import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import { promisify } from 'node:util';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installAgentSchema } from '../../src/lib/schemas/agents';
import { agentSecret, enrolmentOf } from '../../src/lib/server/agents/enrolment';
import { AGENT_UNIT, agentPaths, startAgentInstall } from '../../src/lib/server/agents/install';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { serveAgentRoutes } from '../support/pull-agents';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Installing the pull agent over SSH (docs/pull-agent.md, "Installing over SSH") on a real sshd host
 * (127.0.1.77): what is installed is read on the host itself, and the installed agent, started there as its unit
 * would start it, polls the console with the secret the install put on the node.
 */

const run = promisify(execFile);
let bed: Testbed;
let host: TestHost;
let nodeId = '';
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let server: Server;
let base = '';

const sshArgs = (command: string) => [
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
];
/** Runs a command on the test host as root through OpenSSH, outside the console. */
const onHost = async (command: string) => (await run('ssh', sshArgs(command))).stdout.trim();

const input = installAgentSchema.parse({
	backup_cmd: 'echo backup',
	pull_cmd: 'echo "pull \\"images\\""',
	migrate_cmd: 'echo migrate',
	smoke_cmd: 'echo smoke',
	switch_cmd: 'echo switch',
	health_cmd: '',
	healthcheck_url: 'http://127.0.0.1:8080/health',
	rollback_cmd: 'echo rollback'
});

async function install() {
	const { runId } = await startAgentInstall(systemActor, nodeId, input, base);
	await waitForRun(runId, ['succeeded', 'failed'], 120_000);
	const r = await getRun(runId);
	const log: string[] = [];
	for await (const line of readRunLog(runId)) log.push(`${line.step}: ${line.text}`);
	if (r.state !== 'succeeded') console.log(log.join('\n'));
	return { run: r, log };
}

beforeAll(async () => {
	pg = await freshPostgres('flotilla_agent_install');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	bed = await startTestbed({ hosts: 1, firstHost: 77 });
	host = bed.hosts[0]!;
	const [node] = await registerTestbedNodes(bed);
	nodeId = node!.id;
	// The console's agent endpoints, for the installed agent to poll (the test hosts share this machine's network).
	({ base, server } = await serveAgentRoutes());
	await startEngine({ concurrency: 4, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	server?.close();
	await bed?.stop();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
});

describe('installing the pull agent over SSH', () => {
	it('installs the script, its environment, the secret and an enabled, started unit; the installed agent polls with that secret', async () => {
		expect(await enrolmentOf(nodeId)).toBeNull();
		const { run: first, log } = await install();
		expect(first.state).toBe('succeeded');
		expect(first.tasks[0]!.steps.map((s) => s.name)).toEqual(['files', 'secret', 'service']);
		expect(log).toEqual(
			expect.arrayContaining([
				`files: ${agentPaths.script}: installed`,
				`files: ${agentPaths.env}: installed`,
				`files: ${agentPaths.unit}: installed`,
				`secret: ${agentPaths.secret}: installed; the node's agent is enrolled with it`,
				`service: ${AGENT_UNIT} is enabled and was restarted`
			])
		);

		// On the host: the script as the repository has it, modes and owners, the environment, the secret.
		const script = await readFile('agent/flotilla-agent', 'utf8');
		const sum = (t: string) => createHash('sha256').update(t).digest('hex');
		expect((await onHost(`sha256sum ${agentPaths.script}`)).split(' ')[0]).toBe(sum(script));
		expect(
			await onHost(`stat -c '%a %U' ${agentPaths.script} ${agentPaths.env} ${agentPaths.secret} ${agentPaths.unit}`)
		).toBe(['755 root', '600 root', '600 root', '644 root'].join('\n'));
		const env = await onHost(`cat ${agentPaths.env}`);
		expect(env.split('\n')).toEqual([
			`FLOTILLA_URL="${base}"`,
			`FLOTILLA_NODE_ID="${nodeId}"`,
			`AGENT_SECRET_FILE="${agentPaths.secret}"`,
			'UPDATE_BACKUP_CMD="echo backup"',
			'UPDATE_HEALTHCHECK_URL="http://127.0.0.1:8080/health"',
			'UPDATE_MIGRATE_CMD="echo migrate"',
			'UPDATE_PULL_CMD="echo \\"pull \\\\\\"images\\\\\\"\\""',
			'UPDATE_ROLLBACK_CMD="echo rollback"',
			'UPDATE_SMOKE_CMD="echo smoke"',
			'UPDATE_SWITCH_CMD="echo switch"'
		]);
		const secret = (await agentSecret(nodeId))!;
		expect(await onHost(`cat ${agentPaths.secret}`)).toBe(secret);
		expect(await onHost(`grep -c . ${agentPaths.unit}`)).not.toBe('0');
		expect(await onHost(`systemctl is-enabled ${AGENT_UNIT}; systemctl is-active ${AGENT_UNIT}`)).toBe(
			'enabled\nactive'
		);
		const audited = await db().select().from(auditLog).where(eq(auditLog.targetId, nodeId));
		expect(audited.map((a) => a.action)).toContain('agent.enrol');

		// The installed agent, started as the unit starts it (its environment file, its script), polls and is
		// accepted: the console knows its version and when it polled. Its state goes where this host keeps its own.
		const agent = spawn(
			'ssh',
			sshArgs(
				`set -a; . ${agentPaths.env}; set +a; AGENT_STATE_FILE=/var/lib/flotilla-testbed/agent/state exec timeout 60 sh ${agentPaths.script}`
			),
			{ stdio: 'ignore' }
		);
		try {
			const polled = await waitFor('the installed agent to poll', async () => {
				const e = await enrolmentOf(nodeId);
				return e?.last_poll_at ? e : null;
			});
			expect(polled.agent_version).toBe('1.0.0');
		} finally {
			agent.kill();
		}
	}, 180_000);

	it('run again, it changes nothing that is right: no file rewritten, the same secret, the agent not restarted', async () => {
		const secret = await agentSecret(nodeId);
		const restartsBefore = (await bed.commandLog(host)).filter((l) => / systemctl restart /.test(l)).length;
		const { run: again, log } = await install();
		expect(again.state).toBe('succeeded');
		expect(log).toEqual(
			expect.arrayContaining([
				`files: ${agentPaths.script}: unchanged`,
				`files: ${agentPaths.env}: unchanged`,
				`files: ${agentPaths.unit}: unchanged`,
				`secret: ${agentPaths.secret}: unchanged (the agent is enrolled with it)`,
				`service: ${AGENT_UNIT} is enabled and running`
			])
		);
		expect(await agentSecret(nodeId)).toBe(secret);
		expect((await bed.commandLog(host)).filter((l) => / systemctl restart /.test(l)).length).toBe(restartsBefore);

		// A secret on the node that is not the console's (changed by hand): replaced, and the agent restarted.
		await onHost(`echo 0000 > ${agentPaths.secret}`);
		const { run: mended, log: mendedLog } = await install();
		expect(mended.state).toBe('succeeded');
		expect(mendedLog).toContain(`service: ${AGENT_UNIT} is enabled and was restarted`);
		const replaced = (await agentSecret(nodeId))!;
		expect(replaced).not.toBe(secret);
		expect(await onHost(`cat ${agentPaths.secret}`)).toBe(replaced);
	}, 180_000);
});
