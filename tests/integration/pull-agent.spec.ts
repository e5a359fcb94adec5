import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { and, eq, isNull } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { agentSecret, enrolAgent, getEnrolment, revokeAgent } from '../../src/lib/server/agents/enrolment';
import { hmacHex, replyText, requestText } from '../../src/lib/server/agents/signing';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { db } from '../../src/lib/server/db';
import {
	agentEnrolments,
	agentEnrolTokens,
	agentJobs,
	agentNonces,
	applianceImages,
	auditLog,
	releases as releasesTable,
	events
} from '../../src/lib/server/db/schema';
import { getRun } from '../../src/lib/server/engine';
import { driveRollouts } from '../../src/lib/server/rollouts/driver';
import { getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { createEnrolToken } from '../../src/lib/server/agents/enrol-tokens';
import { saveWindow } from '../../src/lib/server/sysupdates/windows';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed } from '../testbed/testbed';
import { waitFor } from '../support/engine';
import {
	AGENT,
	Agents,
	driveUntilDone,
	lines,
	pullNode,
	rolloutTo,
	type Agent,
	addUnusedCredential,
	startPullConsole,
	type PullConsole
} from '../support/pull-agents';

/**
 * The pull agent (agent/flotilla-agent, docs/pull-agent.md) run as real processes with sh on this machine
 * against the console's own endpoints, served by the test over HTTP, in a real rollout on a real engine.
 */

let pullConsole: PullConsole;
let base = '';
let dir = '';
let agents: Agents;
const startAgent = (...args: Parameters<Agents['start']>) => agents.start(...args);
const killAgent = (a: Agent) => agents.kill(a);

async function taskOf(runId: string, node: string) {
	return (await getRun(runId)).tasks.find((t) => t.nodeName === node)!;
}

beforeAll(async () => {
	pullConsole = await startPullConsole('flotilla_pull_agent', async () => {
		await addUnusedCredential();
		await createRole(systemActor, createRoleSchema.parse({ name: 'web', path: '/opt/web', units: ['web.service'] }));
	});
	({ base, dir, agents } = pullConsole);
}, 60_000);

afterAll(async () => {
	await pullConsole?.stop();
});

describe('pull agents', () => {
	it('take part in a rollout: two succeed through the six steps; one whose smoke fails rolls back and counts against the threshold', async () => {
		const a = await pullNode('pull-a');
		const b = await pullNode('pull-b');
		const c = await pullNode('pull-c');
		// Judged once all three finished: one failure in three passes a 20% threshold.
		const { rollout, sha, version } = await rolloutTo(['pull-a', 'pull-b', 'pull-c'], {
			failure_threshold_percent: 20,
			min_finished_nodes: 3
		});
		const agents = {
			a: startAgent('pull-a', a.id, a.secret),
			b: startAgent('pull-b', b.id, b.secret),
			c: startAgent('pull-c', c.id, c.secret, { UPDATE_SMOKE_CMD: 'echo "smoke: /health answered 503"; exit 3' })
		};
		const done = await driveUntilDone(rollout.id);
		expect(done.state).toBe('paused');
		expect(done.reason).toMatch(/1 of 3 finished nodes failed/);
		const states = Object.fromEntries((await nodesOfRollout(rollout.id)).map((n) => [n.nodeName, n.state]));
		expect(states).toEqual({ 'pull-a': 'succeeded', 'pull-b': 'succeeded', 'pull-c': 'rolled_back' });

		const six = ['backup', 'pull', 'migrate', 'smoke', 'switch', 'health'];
		for (const agent of [agents.a, agents.b]) {
			expect(await lines(agent.log)).toEqual(six.map((s) => `${s} ${version} ${sha}`));
		}
		// Failed at smoke: never switched; rolled back once.
		expect(await lines(agents.c.log)).toEqual(
			['backup', 'pull', 'migrate', 'rollback'].map((s) => `${s} ${version} ${sha}`)
		);
		const runId = done.stages[0]!.runId!;
		const ok = await taskOf(runId, 'pull-a');
		expect(ok.state).toBe('succeeded');
		expect(ok.steps.filter((s) => s.phase === 'do').map((s) => s.name)).toEqual(['window', 'agent', ...six]);
		const bad = await taskOf(runId, 'pull-c');
		expect(bad.state).toBe('rolled_back');
		expect(bad.error).toBe('smoke: exited with 3: smoke: /health answered 503');
		expect(bad.steps.map((s) => `${s.phase} ${s.name} ${s.state}`)).toEqual([
			'do window succeeded',
			'do agent succeeded',
			'do backup succeeded',
			'do pull succeeded',
			'do migrate succeeded',
			'do smoke failed',
			'undo backup succeeded'
		]);
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, bad.id));
		expect(job!.state).toBe('rolled_back');
		expect(Object.keys(job!.steps).sort()).toEqual(['backup', 'migrate', 'pull', 'rollback', 'smoke']);
		// Each agent polled and said its version; all left no state behind.
		const polled = await db().select().from(agentEnrolments);
		expect(polled.every((e) => e.agentVersion === '1.0.0' && e.lastPollAt)).toBe(true);
		// Cleared once the console acknowledged the last report.
		for (const agent of Object.values(agents))
			await waitFor('no agent state', async () => !existsSync(agent.stateFile));
		for (const agent of Object.values(agents)) await killAgent(agent);
	}, 90_000);

	it('an agent killed mid-update rolls back after its restart and reports each step once', async () => {
		const d = await pullNode('pull-d');
		const { rollout, sha, version } = await rolloutTo(['pull-d']);
		// Before any agent runs, the task says the node's agent never polled.
		await waitFor('the task waiting for the agent', async () => {
			await driveRollouts();
			const runId = (await getRollout(rollout.id)).stages[0]?.runId;
			if (!runId) return false;
			const output = await db()
				.select()
				.from(events)
				.where(and(eq(events.runId, runId), eq(events.type, 'task.output')));
			const lines = output.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => l.t));
			return lines.some((l) => /waiting for the agent's next poll \(release [\d.]+\); it has never polled/.test(l));
		});
		const first = startAgent('pull-d', d.id, d.secret, { UPDATE_SMOKE_CMD: 'sleep 120' });
		// In smoke, as its state file says, after migrate's report reached the console.
		await waitFor(
			'the agent in its smoke step',
			async () => {
				await driveRollouts();
				const state = existsSync(first.stateFile) ? await readFile(first.stateFile, 'utf8') : '';
				return /step=smoke\nstatus=running/.test(state);
			},
			30_000
		);
		await killAgent(first);
		startAgent('pull-d', d.id, d.secret);
		const done = await driveUntilDone(rollout.id);
		const task = await taskOf(done.stages[0]!.runId!, 'pull-d');
		expect(task.state).toBe('rolled_back');
		expect(task.error).toMatch(
			/^smoke: exited with no exit code .*: flotilla-agent: the agent restarted during this step$/
		);
		expect(await lines(join(dir, 'pull-d', 'steps.log'))).toEqual(
			['backup', 'pull', 'migrate', 'rollback'].map((s) => `${s} ${version} ${sha}`)
		);
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.id, task.id));
		// backup, pull, migrate, smoke, rollback: five reports, each applied once.
		expect(job!.lastSeq).toBe(5);
		expect(job!.steps.smoke!.status).toBe('failed');
		expect(job!.steps.rollback!.status).toBe('succeeded');
	}, 90_000);

	it('refuses unsigned, mis-signed, stale, replayed and unknown-node requests with a 401, changing nothing', async () => {
		const e = await pullNode('pull-e');
		const body = JSON.stringify({ agent_version: '1.0.0' });
		const signedHeaders = (o: { secret?: string; ts?: number; nonce?: string; node?: string } = {}) => {
			const timestamp = String(o.ts ?? Math.floor(Date.now() / 1000));
			const nonce = o.nonce ?? randomBytes(16).toString('hex');
			const text = requestText({ method: 'POST', path: '/api/updates/next', timestamp, nonce, body });
			return {
				'content-type': 'application/json',
				'x-flotilla-node': o.node ?? e.id,
				'x-flotilla-timestamp': timestamp,
				'x-flotilla-nonce': nonce,
				'x-flotilla-signature': hmacHex(o.secret ?? e.secret, text)
			};
		};
		const post = (headers: Record<string, string>, b = body) =>
			fetch(`${base}/api/updates/next`, { method: 'POST', headers, body: b });
		const refusals: [string, Response][] = [];
		refusals.push(['unsigned', await post({ 'content-type': 'application/json' })]);
		refusals.push(['wrong secret', await post(signedHeaders({ secret: randomBytes(32).toString('hex') }))]);
		refusals.push(['old timestamp', await post(signedHeaders({ ts: Math.floor(Date.now() / 1000) - 3600 }))]);
		refusals.push(['unknown node', await post(signedHeaders({ node: crypto.randomUUID() }))]);
		refusals.push(['changed body', await post(signedHeaders(), JSON.stringify({ agent_version: '6.6.6' }))]);
		const replayed = signedHeaders();
		const firstTime = await post(replayed);
		expect(firstTime.status).toBe(200);
		expect(await firstTime.json()).toEqual({ job: null, poll_seconds: expect.any(Number) });
		const [before] = await db().select().from(agentEnrolments).where(eq(agentEnrolments.nodeId, e.id));
		refusals.push(['replay', await post(replayed)]);
		const answers = await Promise.all(
			refusals.map(async ([why, r]) => [
				why,
				r.status,
				((await r.json()) as { error: { fields: object } }).error.fields
			])
		);
		expect(answers).toEqual([
			['unsigned', 401, { 'x-flotilla-node': 'is required' }],
			['wrong secret', 401, { 'x-flotilla-signature': 'does not match' }],
			['old timestamp', 401, { 'x-flotilla-timestamp': 'is outside the window' }],
			['unknown node', 401, { 'x-flotilla-node': 'is not an enrolled node' }],
			['changed body', 401, { 'x-flotilla-signature': 'does not match' }],
			['replay', 401, { 'x-flotilla-nonce': 'was already used' }]
		]);
		// Only the one good request was remembered, and only it counted as a poll.
		const [after] = await db().select().from(agentEnrolments).where(eq(agentEnrolments.nodeId, e.id));
		expect(after!.lastPollAt).toEqual(before!.lastPollAt);
		expect(await db().select().from(agentNonces).where(eq(agentNonces.nodeId, e.id))).toHaveLength(1);

		// A signed request with a bad body: a 400 naming the field, signed back.
		const bad = JSON.stringify({ agent_version: 'not a version!' });
		const ts = String(Math.floor(Date.now() / 1000));
		const nonce = randomBytes(16).toString('hex');
		const sig = hmacHex(
			e.secret,
			requestText({ method: 'POST', path: '/api/updates/next', timestamp: ts, nonce, body: bad })
		);
		const r = await post(
			{
				'content-type': 'application/json',
				'x-flotilla-node': e.id,
				'x-flotilla-timestamp': ts,
				'x-flotilla-nonce': nonce,
				'x-flotilla-signature': sig
			},
			bad
		);
		expect(r.status).toBe(400);
		expect(((await r.json()) as { error: { fields: object } }).error.fields).toHaveProperty('agent_version');
	});

	it('the agent refuses a reply the console did not sign, and takes no job from it', async () => {
		const f = await pullNode('pull-f');
		// A console impostor: a job offer, signed with another secret.
		const impostor = createServer((_req, res) => {
			const body = JSON.stringify({
				job: { id: crypto.randomUUID(), release: '9.9.9', targets: 'web=abc', commit: 'abc', step_deadline_seconds: 5 },
				poll_seconds: 1
			});
			res.writeHead(200, {
				'content-type': 'application/json',
				'x-flotilla-timestamp': String(Math.floor(Date.now() / 1000)),
				'x-flotilla-signature': hmacHex('not the node secret', body)
			});
			res.end(body);
		});
		await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
		const url = `http://127.0.0.1:${(impostor.address() as AddressInfo).port}`;
		const agent = startAgent('pull-f', f.id, f.secret, {}, url);
		await waitFor('the refusal', async () => agent.stderr().includes("whose signature is not the console's"));
		await killAgent(agent);
		impostor.close();
		expect(existsSync(agent.stateFile)).toBe(false);
		expect(await lines(agent.log)).toEqual([]);
	});

	it('a new secret replaces the old one at once; a revoked agent is refused; both are audited', async () => {
		const g = await pullNode('pull-g');
		const poll = (secret: string) => {
			const body = JSON.stringify({ agent_version: '1.0.0' });
			const timestamp = String(Math.floor(Date.now() / 1000));
			const nonce = randomBytes(16).toString('hex');
			const text = requestText({ method: 'POST', path: '/api/updates/next', timestamp, nonce, body });
			return fetch(`${base}/api/updates/next`, {
				method: 'POST',
				body,
				headers: {
					'content-type': 'application/json',
					'x-flotilla-node': g.id,
					'x-flotilla-timestamp': timestamp,
					'x-flotilla-nonce': nonce,
					'x-flotilla-signature': hmacHex(secret, text)
				}
			});
		};
		expect((await poll(g.secret)).status).toBe(200);
		const again = await enrolAgent(systemActor, g.id);
		expect(again.secret).not.toBe(g.secret);
		expect((await poll(g.secret)).status).toBe(401);
		expect((await poll(again.secret)).status).toBe(200);
		expect((await getEnrolment(g.id)).agent_version).toBe('1.0.0');
		// Sealed at rest: the database never holds the secret itself.
		const [row] = await db().select().from(agentEnrolments).where(eq(agentEnrolments.nodeId, g.id));
		expect(row!.sealedSecret).not.toContain(again.secret);
		await revokeAgent(systemActor, g.id);
		const refused = await poll(again.secret);
		expect(refused.status).toBe(401);
		expect(((await refused.json()) as { error: { fields: object } }).error.fields).toEqual({
			'x-flotilla-node': 'is not an enrolled node'
		});
		const audit = await db().select().from(auditLog).where(eq(auditLog.targetId, g.id));
		expect(audit.map((a) => a.action)).toEqual(['agent.enrol', 'agent.enrol', 'agent.revoke']);
	});

	it('an agent started with a one-time enrolment token exchanges it once, keeps the secret (mode 600) and signs with it; a used, expired or unknown token is refused naming its header, nothing changed', async () => {
		const h = await pullNode('pull-h', ['web'], false);
		const HEADER = 'x-flotilla-enrol-token';
		const exitOf = (a: Agent) =>
			new Promise<number | null>((r) =>
				a.proc.exitCode !== null ? r(a.proc.exitCode) : a.proc.once('exit', (code) => r(code))
			);
		const enrolled = async () =>
			(await db().select().from(agentEnrolments).where(eq(agentEnrolments.nodeId, h.id)))[0] ?? null;
		const exchange = (token: string | null, node: string | null = h.id) =>
			fetch(`${base}/api/agents/enrol`, {
				method: 'POST',
				headers: {
					...(node ? { 'x-flotilla-node': node } : {}),
					...(token ? { 'x-flotilla-enrol-token': token } : {})
				}
			});
		const refusal = async (r: Response) => [r.status, ((await r.json()) as { error: { fields: object } }).error.fields];

		// A first token, replaced by a second before anyone used it: the first no longer works.
		const replaced = await createEnrolToken(systemActor, h.id, { expires_in_minutes: 60 });
		const { token, expires_at } = await createEnrolToken(systemActor, h.id, { expires_in_minutes: 60 });
		expect(Date.parse(expires_at) - Date.now()).toBeGreaterThan(59 * 60_000);
		const stored = await db().select().from(agentEnrolTokens).where(eq(agentEnrolTokens.nodeId, h.id));
		expect(stored).toHaveLength(1);
		// Kept hashed only.
		expect(JSON.stringify(stored)).not.toContain(token);
		expect(await refusal(await exchange(replaced.token))).toEqual([401, { [HEADER]: 'is not known for this node' }]);

		const first = startAgent('pull-h', h.id, '', { FLOTILLA_ENROL_TOKEN: token });
		await waitFor(
			'the enrolled agent polling with its secret',
			async () => (await enrolled())?.agentVersion === '1.0.0'
		);
		const secretFile = join(dir, 'pull-h', 'secret');
		expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
		const kept = (await readFile(secretFile, 'utf8')).split('\n')[0]!;
		expect(kept).toMatch(/^[0-9a-f]{64}$/);
		// The secret it kept is the one the console holds: its signed polls were accepted.
		expect(await agentSecret(h.id)).toBe(kept);
		const sealed = (await enrolled())!.sealedSecret;

		// A restart with the same environment uses the kept secret; it does not spend the token again.
		await killAgent(first);
		const polledBefore = (await enrolled())!.lastPollAt!;
		const again = startAgent('pull-h', h.id, '', { FLOTILLA_ENROL_TOKEN: token });
		await waitFor('a poll after the restart', async () => (await enrolled())!.lastPollAt! > polledBefore);
		await killAgent(again);
		expect(again.stderr()).not.toContain('enrolled');

		// Another machine with the same token: refused, by the agent's own exchange, and it stops.
		const second = startAgent('pull-h-copy', h.id, '', { FLOTILLA_ENROL_TOKEN: token });
		expect(await exitOf(second)).toBe(2);
		expect(second.stderr()).toContain(
			'the console refused the enrolment token (HTTP 401): This enrolment token was already used'
		);
		expect(existsSync(join(dir, 'pull-h-copy', 'secret'))).toBe(false);

		// An expired token (its expiry moved into the past rather than waited for).
		const late = await createEnrolToken(systemActor, h.id, { expires_in_minutes: 5 });
		await db()
			.update(agentEnrolTokens)
			.set({ expiresAt: new Date(Date.now() - 1000) })
			.where(and(eq(agentEnrolTokens.nodeId, h.id), isNull(agentEnrolTokens.usedAt)));
		const expired = startAgent('pull-h-late', h.id, '', { FLOTILLA_ENROL_TOKEN: late.token });
		expect(await exitOf(expired)).toBe(2);
		expect(expired.stderr()).toContain('(HTTP 401): This enrolment token has expired');

		const answers = [
			await refusal(await exchange(token)),
			await refusal(await exchange(late.token)),
			await refusal(await exchange(randomBytes(32).toString('hex'))),
			// Another node's id with this node's token: as unknown as any other.
			await refusal(await exchange(token, crypto.randomUUID())),
			await refusal(await exchange(null)),
			await refusal(await exchange('not hex')),
			await refusal(await exchange(token, 'pull-h')),
			await refusal(await exchange(token, null))
		];
		expect(answers).toEqual([
			[401, { [HEADER]: 'was already used' }],
			[401, { [HEADER]: 'has expired' }],
			[401, { [HEADER]: 'is not known for this node' }],
			[401, { [HEADER]: 'is not known for this node' }],
			[401, { [HEADER]: 'is required' }],
			[401, { [HEADER]: 'must be 64 hex digits' }],
			[401, { 'x-flotilla-node': 'must be the node id' }],
			[401, { 'x-flotilla-node': 'is required' }]
		]);
		// None of the refusals touched the enrolment.
		expect((await enrolled())!.sealedSecret).toBe(sealed);
		const audit = await db().select().from(auditLog).where(eq(auditLog.targetId, h.id));
		expect(audit.map((a) => [a.action, a.actorName])).toEqual([
			['agent.enrol_token', 'system'],
			['agent.enrol_token', 'system'],
			['agent.enrol', 'agent of pull-h'],
			['agent.enrol_token', 'system']
		]);

		// Revoking drops the waiting token with the enrolment.
		const waiting = await createEnrolToken(systemActor, h.id, { expires_in_minutes: 60 });
		await revokeAgent(systemActor, h.id);
		expect(await enrolled()).toBeNull();
		expect(await refusal(await exchange(waiting.token))).toEqual([401, { [HEADER]: 'is not known for this node' }]);
	}, 90_000);

	it('neither the secret nor the enrolment token is ever in a command line (/proc/<pid>/cmdline) while the agent enrols, signs and runs a job; its steps do not get the secret either', async () => {
		const n = await pullNode('pull-n', ['web'], false);
		const { token } = await createEnrolToken(systemActor, n.id, { expires_in_minutes: 60 });
		// Every command the agent runs goes through a wrapper that logs the command line it was started with, as
		// any user on the node reads it in /proc, and then runs the real command.
		const bin = join(dir, 'pull-n-bin');
		const seen = join(dir, 'pull-n-cmdlines');
		await mkdir(bin, { recursive: true });
		const commands =
			'awk cat chmod curl date dirname env grep head mkdir mktemp mv od openssl rm sed sleep sh tail tr wc';
		for (const name of commands.split(' ')) {
			const real = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
			const wrapper = `#!/bin/sh\n/usr/bin/tr '\\000' ' ' </proc/$$/cmdline >>${seen}\necho >>${seen}\nexec ${real} "$@"\n`;
			await writeFile(join(bin, name), wrapper, { mode: 0o755 });
		}
		const agent = startAgent('pull-n', n.id, '', {
			PATH: `${bin}:${process.env.PATH}`,
			FLOTILLA_ENROL_TOKEN: token,
			UPDATE_HEALTH_CMD: `env > ${join(dir, 'pull-n-env')}`
		});
		// A pull node once enrolled: then its rollout goes through the agent.
		await waitFor('the agent enrolled', async () => (await agentSecret(n.id)) !== null);
		const { rollout } = await rolloutTo(['pull-n']);
		const done = await driveUntilDone(rollout.id);
		expect(done.state).toBe('completed');
		await killAgent(agent);
		const secret = (await agentSecret(n.id))!;
		const cmdlines = (await readFile(seen, 'utf8')).split('\n').filter(Boolean);
		// The wrappers did see the signing and the requests: the HMAC's digests, the enrolment and the polls.
		expect(cmdlines.filter((l) => l.includes('openssl dgst -sha256 -binary')).length).toBeGreaterThan(10);
		expect(cmdlines.some((l) => l.includes('/api/agents/enrol'))).toBe(true);
		expect(cmdlines.some((l) => l.includes('/api/updates/report'))).toBe(true);
		for (const l of cmdlines) {
			expect(l).not.toContain(secret);
			expect(l).not.toContain(token);
		}
		const env = await readFile(join(dir, 'pull-n-env'), 'utf8');
		expect(env).toContain('FLOTILLA_STEP=health');
		expect(env).not.toContain(secret);
		expect(env).not.toMatch(/AGENT_SECRET=/);
	}, 90_000);

	it("streams a running step's output in batches: its first line is in the task's log while the step still runs", async () => {
		const p = await pullNode('pull-p');
		const go = join(dir, 'pull-p-go');
		const { rollout } = await rolloutTo(['pull-p']);
		const agent = startAgent('pull-p', p.id, p.secret, {
			AGENT_OUTPUT_SECONDS: '1',
			UPDATE_MIGRATE_CMD: `echo 'migrating: 1 of 2'; while [ ! -f ${go} ]; do sleep 0.2; done; echo 'migrating: 2 of 2'`
		});
		const logOf = async (runId: string) =>
			(
				await db()
					.select()
					.from(events)
					.where(and(eq(events.runId, runId), eq(events.type, 'task.output')))
			)
				.sort((a, b) => a.id - b.id)
				.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => l.t));
		const runId = await waitFor('the run', async () => {
			await driveRollouts();
			return (await getRollout(rollout.id)).stages[0]?.runId;
		});
		// The migration waits for the test: its first line can only be in the log if it came while it ran.
		await waitFor(
			'the first line of migrate in the task log',
			async () => (await logOf(runId)).includes('migrate: migrating: 1 of 2'),
			30_000
		);
		const task = await taskOf(runId, 'pull-p');
		const [running] = await db().select().from(agentJobs).where(eq(agentJobs.id, task.id));
		expect(running!.steps.migrate).toMatchObject({ status: 'running', output: 'migrating: 1 of 2\n' });
		expect((await logOf(runId)).includes('migrate: migrating: 2 of 2')).toBe(false);
		await writeFile(go, '');
		const done = await driveUntilDone(rollout.id);
		expect(done.state).toBe('completed');
		const log = (await logOf(runId)).filter((l) => l.startsWith('migrate: '));
		// Each line once, in order: the final report brought only what the batches had not.
		expect(log).toEqual(['migrate: migrating: 1 of 2', 'migrate: migrating: 2 of 2']);
		const [ended] = await db().select().from(agentJobs).where(eq(agentJobs.id, task.id));
		expect(ended!.steps.migrate).toMatchObject({
			status: 'succeeded',
			exit_code: 0,
			output: 'migrating: 1 of 2\nmigrating: 2 of 2\n'
		});
		await killAgent(agent);
	}, 90_000);

	it('an appliance checks in with a signed GET (seed shape): nothing, then the update its rollout holds for it, with its image and window; unsigned is refused', async () => {
		const q = await pullNode('pull-q');
		const checkin = async (secret = q.secret) => {
			const timestamp = String(Math.floor(Date.now() / 1000));
			const nonce = randomBytes(16).toString('hex');
			const path = '/api/appliances/checkin';
			const r = await fetch(`${base}${path}`, {
				headers: {
					'x-flotilla-node': q.id,
					'x-flotilla-timestamp': timestamp,
					'x-flotilla-nonce': nonce,
					'x-flotilla-signature': hmacHex(secret, requestText({ method: 'GET', path, timestamp, nonce, body: '' }))
				}
			});
			const body = await r.text();
			// Signed back over the request's nonce, as every answer to an agent is.
			const rts = r.headers.get('x-flotilla-timestamp') ?? '';
			const signedBack =
				r.headers.get('x-flotilla-signature') ===
				hmacHex(q.secret, replyText({ status: r.status, nonce, timestamp: rts, body }));
			return { status: r.status, body: JSON.parse(body) as unknown, signedBack };
		};
		const unsigned = await fetch(`${base}/api/appliances/checkin`);
		expect(unsigned.status).toBe(401);
		expect(((await unsigned.json()) as { error: { fields: object } }).error.fields).toEqual({
			'x-flotilla-node': 'is required'
		});
		expect((await checkin(randomBytes(32).toString('hex'))).status).toBe(401);

		expect(await checkin()).toEqual({
			status: 200,
			body: { update_available: false, update: null, poll_seconds: expect.any(Number) },
			signedBack: true
		});
		expect((await getEnrolment(q.id)).last_poll_at).not.toBeNull();

		// A release rolled out to it: its job waits for the agent.
		const { rollout, version } = await rolloutTo(['pull-q']);
		await waitFor('the job waiting for the appliance', async () => {
			await driveRollouts();
			return (await db().select().from(agentJobs).where(eq(agentJobs.nodeId, q.id))).length > 0;
		});
		// Its maintenance window (set once the job waits: the rollout itself does not wait for windows here).
		await saveWindow(systemActor, {
			scope: 'node',
			target: q.id,
			start: '02:00',
			end: '05:00',
			time_zone: 'America/New_York',
			days: [0, 1, 2, 3, 4, 5, 6]
		});
		expect(await checkin()).toEqual({
			status: 200,
			body: {
				update_available: true,
				update: { version, iso_url: null, sha256: null, reboot_after: '02:00' },
				poll_seconds: expect.any(Number)
			},
			signedBack: true
		});
		// The release's image, when it has one (a row as the image upload leaves it, written here directly).
		const [rel] = await db().select().from(releasesTable).where(eq(releasesTable.version, version));
		const sha256 = randomBytes(32).toString('hex');
		await db().insert(applianceImages).values({
			releaseId: rel!.id,
			sha256,
			size: 1,
			signature: 'test',
			verifiedBy: 'test',
			state: 'complete',
			sourceUrl: 'https://updates.example/v.iso',
			createdBy: 'test'
		});
		expect(await checkin()).toEqual({
			status: 200,
			body: {
				update_available: true,
				update: { version, iso_url: 'https://updates.example/v.iso', sha256, reboot_after: '02:00' },
				poll_seconds: expect.any(Number)
			},
			signedBack: true
		});
		// Gone again, so that the rollout stays the plain release it started as.
		await db().delete(applianceImages).where(eq(applianceImages.releaseId, rel!.id));
		// A look only: its agent takes the job as any agent does, and the rollout completes.
		const [job] = await db().select().from(agentJobs).where(eq(agentJobs.nodeId, q.id));
		expect(job!.claimedAt).toBeNull();
		const agent = startAgent('pull-q', q.id, q.secret);
		expect((await driveUntilDone(rollout.id)).state).toBe('completed');
		await killAgent(agent);
	}, 90_000);

	it('shellcheck passes on the agent', () => {
		expect(execFileSync('shellcheck', ['--shell=sh', AGENT], { encoding: 'utf8' })).toBe('');
	});
});

describe('a rollout of SSH nodes and a pull node together', () => {
	let bed: Testbed;
	beforeAll(async () => {
		bed = await startTestbed({ hosts: 2, firstHost: 72, roles: ['backend'] });
		await registerTestbedNodes(bed, () => ({ roles: ['backend'] }));
		await createRole(
			systemActor,
			createRoleSchema.parse({ name: 'backend', path: '/opt/backend', units: ['backend.service'] })
		);
	}, 120_000);
	afterAll(async () => {
		await bed?.stop();
	});

	it('updates the SSH nodes over SSH and the pull node through its agent, in one run', async () => {
		const m = await pullNode('pull-m', ['backend']);
		const sha = await bed.addCommit('backend');
		const names = [...bed.hosts.map((h) => h.name), 'pull-m'];
		const { rollout, version } = await rolloutTo(names, { failure_threshold_percent: 0, min_finished_nodes: 1 }, sha);
		const agent = startAgent('pull-m', m.id, m.secret);
		const done = await driveUntilDone(rollout.id);
		expect(done.state).toBe('completed');
		for (const h of bed.hosts) expect(await bed.checkedOutCommit(h, 'backend')).toBe(sha);
		expect((await lines(agent.log)).at(-1)).toBe(`health ${version} ${sha}`);
		const run = await getRun(done.stages[0]!.runId!);
		expect(run.tasks.map((t) => [t.nodeName, t.state]).sort()).toEqual(names.map((n) => [n, 'succeeded']).sort());
		// The SSH nodes ran Code Sync's deploy; the pull node waited on its agent's six steps.
		const stepsOf = (name: string) => run.tasks.find((t) => t.nodeName === name)!.steps.map((st) => st.name);
		expect(stepsOf('pull-m')).toEqual(['window', 'agent', 'backup', 'pull', 'migrate', 'smoke', 'switch', 'health']);
		expect(stepsOf(bed.hosts[0]!.name)).toContain('bake');
		await killAgent(agent);
	}, 180_000);
});
