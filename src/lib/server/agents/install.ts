import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { InstallAgentInput } from '$lib/schemas/agents';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { createRun, StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { installFile } from '$lib/server/provisioning/phases';
import { sh } from '$lib/server/ssh/shell';
import agentScript from '../../../../agent/flotilla-agent?raw';
import { agentSecret, storeNewSecret } from './enrolment';
import { newAgentSecret } from './signing';

/**
 * Installing the pull agent over SSH (docs/pull-agent.md, "Installing over SSH"), for a node the console reaches
 * now but should update through its agent: the script, its environment and a systemd unit, then the node's secret
 * written straight to the node (it never passes through a person's hands, nor a token), then the service enabled
 * and (re)started. Every file is written only when it differs, so running it again changes nothing that is right.
 */

export const agentPaths = {
	script: '/opt/flotilla-agent/flotilla-agent',
	dir: '/etc/flotilla-agent',
	env: '/etc/flotilla-agent/agent.env',
	secret: '/etc/flotilla-agent/secret',
	unit: '/etc/systemd/system/flotilla-agent.service'
} as const;
export const AGENT_UNIT = 'flotilla-agent';

const installParams = z.object({
	console_url: z.string(),
	env: z.record(z.string(), z.string())
});
type InstallParams = z.infer<typeof installParams>;

interface InstallMemo {
	/** Whether a file or the secret changed: only then is a running agent restarted. */
	changed?: boolean;
}

const unitText = `[Unit]
Description=Flotilla pull agent (docs/pull-agent.md)
Wants=network-online.target
After=network-online.target

[Service]
EnvironmentFile=${agentPaths.env}
ExecStart=/bin/sh ${agentPaths.script}
# The agent's state (its job, mid-update) lives here.
StateDirectory=flotilla-agent
StateDirectoryMode=0700
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
`;

/** systemd's EnvironmentFile syntax: a double-quoted value, with \\ and " escaped (no expansion happens). */
const envLine = (key: string, value: string) => `${key}="${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const root = { owner: 'root', group: 'root' };

export const agentInstallFlow: Flow<InstallParams> = {
	kind: 'agent-install',
	title: 'Install pull agent',
	parseParams: (p) => installParams.parse(p),
	steps: [
		{
			name: 'files',
			deadlineMs: 60_000,
			async do(ctx) {
				const memo = ctx.memo as InstallMemo;
				const made = await ctx.exec(
					sh`mkdir -p -- /opt/flotilla-agent ${agentPaths.dir} && chmod 700 -- ${agentPaths.dir}`
				);
				if (made.exitCode !== 0) throw new StepFailed(`could not create the agent's folders: ${made.stderr.trim()}`);
				const env = [
					envLine('FLOTILLA_URL', ctx.params.console_url),
					envLine('FLOTILLA_NODE_ID', ctx.node.id),
					envLine('AGENT_SECRET_FILE', agentPaths.secret),
					// In name order: the params come back from the database in an order of its own, and the same
					// input must make the same file.
					...Object.entries(ctx.params.env)
						.sort(([a], [b]) => a.localeCompare(b))
						.map(([k, v]) => envLine(k, v))
				].join('\n');
				const files: [string, string, string][] = [
					[agentPaths.script, agentScript, '755'],
					[agentPaths.env, `${env}\n`, '600'],
					[agentPaths.unit, unitText, '644']
				];
				for (const [path, content, mode] of files) {
					const wrote = await installFile(ctx as StepContext<unknown>, content, path, { mode, ...root });
					ctx.log(`${path}: ${wrote ? 'installed' : 'unchanged'}`);
					if (wrote) memo.changed = true;
				}
			}
		},
		{
			name: 'secret',
			deadlineMs: 60_000,
			async do(ctx) {
				// The node's secret, if the one on the node is the one the console holds; else a new one for both.
				const held = await agentSecret(ctx.node.id);
				// sha256sum exits 1 when there is no file yet.
				const found = await ctx.exec(sh`sha256sum -- ${agentPaths.secret}`, { okExitCodes: [0, 1] });
				if (held && found.exitCode === 0 && found.stdout.split(/\s/)[0] === sha256(`${held}\n`)) {
					ctx.log(`${agentPaths.secret}: unchanged (the agent is enrolled with it)`);
					return;
				}
				const secret = newAgentSecret();
				// On the node first: should writing it fail, the console still holds the agent's old secret.
				await installFile(ctx as StepContext<unknown>, `${secret}\n`, agentPaths.secret, { mode: '600', ...root });
				await db().transaction(async (tx) => {
					await storeNewSecret(tx, ctx.node.id, secret);
					await recordAudit(
						{ ...systemActor, via: 'agent install run' },
						{
							action: 'agent.enrol',
							targetType: 'node',
							targetId: ctx.node.id,
							details: { node: ctx.node.name, run_id: ctx.task.runId, by: 'install over SSH' }
						},
						tx
					);
				});
				ctx.log(`${agentPaths.secret}: installed; the node's agent is enrolled with it`);
				(ctx.memo as InstallMemo).changed = true;
			}
		},
		{
			name: 'service',
			deadlineMs: 60_000,
			async do(ctx) {
				const changed = (ctx.memo as InstallMemo).changed;
				// Restarted when anything changed, so that it runs the new script, environment or secret.
				const start = changed
					? sh`systemctl restart -- ${AGENT_UNIT}`
					: sh`systemctl is-active --quiet -- ${AGENT_UNIT} || systemctl start -- ${AGENT_UNIT}`;
				const r = await ctx.exec(sh`systemctl daemon-reload && systemctl enable -- ${AGENT_UNIT} && ${start}`);
				if (r.exitCode !== 0) {
					throw new StepFailed(`could not start ${AGENT_UNIT}: ${r.stderr.trim().split('\n').at(-1) ?? ''}`);
				}
				ctx.log(`${AGENT_UNIT} is enabled and ${changed ? 'was restarted' : 'running'}`);
			}
		}
	]
};

const envNames: Record<keyof InstallAgentInput, string> = {
	backup_cmd: 'UPDATE_BACKUP_CMD',
	pull_cmd: 'UPDATE_PULL_CMD',
	migrate_cmd: 'UPDATE_MIGRATE_CMD',
	smoke_cmd: 'UPDATE_SMOKE_CMD',
	switch_cmd: 'UPDATE_SWITCH_CMD',
	health_cmd: 'UPDATE_HEALTH_CMD',
	healthcheck_url: 'UPDATE_HEALTHCHECK_URL',
	rollback_cmd: 'UPDATE_ROLLBACK_CMD'
};

/**
 * Starts the install run on one node, reached over SSH (its host key pinned), with the agent pointed at
 * `consoleUrl`. The run's creation is audited; so is the enrolment it makes.
 */
export async function startAgentInstall(
	actor: Actor,
	nodeId: string,
	input: InstallAgentInput,
	consoleUrl: string
): Promise<{ runId: string }> {
	const node = await getNode(nodeId);
	if (node.hostKeyStatus !== 'pinned') {
		throw new ServiceError('validation_failed', `${node.name} has no pinned host key`, {
			node: 'has no pinned host key: check the node and accept its key first'
		});
	}
	const env = Object.fromEntries(
		Object.entries(input)
			.filter(([, v]) => v)
			.map(([k, v]) => [envNames[k as keyof InstallAgentInput], v as string])
	);
	const run = await createRun(actor, {
		kind: agentInstallFlow.kind,
		title: `Install the pull agent on ${node.name}`,
		nodeIds: [node.id],
		params: { console_url: consoleUrl, env },
		scope: { nodes: [node.id] }
	});
	return { runId: run.id };
}
