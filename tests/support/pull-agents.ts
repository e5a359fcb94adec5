import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { enrolAgent } from '../../src/lib/server/agents/enrolment';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { credentials, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease } from '../../src/lib/server/releases/releases';
import { hmacSignature } from '../../src/lib/server/releases/signing';
import { driveRollouts } from '../../src/lib/server/rollouts/driver';
import { createRollout, getRollout } from '../../src/lib/server/rollouts/rollouts';
import { POST as enrolRoute } from '../../src/routes/api/agents/enrol/+server';
import { GET as checkinRoute } from '../../src/routes/api/appliances/checkin/+server';
import { POST as nextRoute } from '../../src/routes/api/updates/next/+server';
import { POST as reportRoute } from '../../src/routes/api/updates/report/+server';
import { freshPostgres } from './databases';
import { waitFor } from './engine';

/**
 * The pull agent (agent/flotilla-agent, docs/pull-agent.md) as real processes with sh on this machine, against
 * the console's own agent endpoints served by the test over HTTP.
 */

export const AGENT = resolve('agent/flotilla-agent');
/** The HMAC secret releases are signed with (useReleaseKeys). */
export const RELEASE_SECRET = 'pull-agent-test-signing-secret-01';

const routes: Record<string, (event: never) => Promise<Response>> = {
	'/api/agents/enrol': enrolRoute as never,
	'/api/updates/next': nextRoute as never,
	'/api/updates/report': reportRoute as never,
	'/api/appliances/checkin': checkinRoute as never
};

/** Serves the agent endpoints on a free port of 127.0.0.1; resolves to the console's base URL. */
export async function serveAgentRoutes(): Promise<{ base: string; server: Server }> {
	let base = '';
	const server = createServer((req, res) => {
		void (async () => {
			const chunks: Buffer[] = [];
			for await (const c of req) chunks.push(c as Buffer);
			const url = new URL(req.url!, base);
			const request = new Request(url, {
				method: req.method,
				headers: req.headers as Record<string, string>,
				body: chunks.length ? Buffer.concat(chunks) : undefined
			});
			const route = routes[url.pathname];
			const answer = route ? await route({ request, url } as never) : new Response('no route', { status: 404 });
			res.writeHead(answer.status, Object.fromEntries(answer.headers));
			res.end(Buffer.from(await answer.arrayBuffer()));
		})();
	});
	await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
	base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	return { base, server };
}

/** The console a pull-agent spec runs its agents against, and the folder their homes go in. */
export interface PullConsole {
	base: string;
	dir: string;
	agents: Agents;
	/** Kills every agent, stops the engine and the endpoints, and removes the database and `dir`. */
	stop(): Promise<void>;
}

/**
 * A fresh database, a master key, releases signed with RELEASE_SECRET, every domain registered, the agent
 * endpoints served, then the spec's own `setUp` (its roles and nodes) before the engine starts.
 */
export async function startPullConsole(database: string, setUp: () => Promise<void>): Promise<PullConsole> {
	const pg = await freshPostgres(database);
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	useReleaseKeys({ ed25519: [], hmacSecret: RELEASE_SECRET });
	registerDomains();
	const dir = await mkdtemp(join(tmpdir(), `${database}-`));
	const { base, server } = await serveAgentRoutes();
	const agents = new Agents(dir, base);
	let engine = false;
	const stop = async () => {
		agents.killAll();
		if (engine) await stopEngine();
		server.close();
		useReleaseKeys(undefined);
		useMasterKey(undefined);
		useDatabase(undefined);
		await pg.close();
		await rm(dir, { recursive: true, force: true });
	};
	try {
		await setUp();
		await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
		engine = true;
	} catch (error) {
		await stop();
		throw error;
	}
	return { base, dir, agents, stop };
}

/** A credential nothing connects with: every node needs one, and the console never connects to a pull node. */
export async function addUnusedCredential(): Promise<void> {
	await db().insert(credentials).values({
		id: crypto.randomUUID(),
		name: 'unused',
		keyType: 'ssh-ed25519',
		publicKey: 'x',
		fingerprint: 'SHA256:x',
		sealedPrivateKey: 'x'
	});
}

export interface Agent {
	proc: ChildProcess;
	stderr: () => string;
	stateFile: string;
	log: string;
}

/** Agents started by one spec file, under `dir`, against the console at `base`. */
export class Agents {
	private readonly running: ChildProcess[] = [];
	constructor(
		private readonly dir: string,
		private readonly base: string
	) {}

	/** Starts the agent for a node; each step appends `STEP RELEASE COMMIT` to its log file. */
	start(name: string, nodeId: string, secret: string, env: Record<string, string> = {}, url = this.base): Agent {
		const home = join(this.dir, name);
		const log = join(home, 'steps.log');
		const step = (s: string) => `mkdir -p ${home} && echo "${s} $FLOTILLA_RELEASE $FLOTILLA_COMMIT" >> ${log}`;
		const proc = spawn('sh', [AGENT], {
			detached: true,
			stdio: ['ignore', 'ignore', 'pipe'],
			env: {
				PATH: process.env.PATH,
				FLOTILLA_URL: url,
				FLOTILLA_NODE_ID: nodeId,
				AGENT_SECRET: secret,
				AGENT_STATE_FILE: join(home, 'state'),
				AGENT_POLL_SECONDS: '1',
				UPDATE_BACKUP_CMD: step('backup'),
				UPDATE_PULL_CMD: step('pull'),
				UPDATE_MIGRATE_CMD: step('migrate'),
				UPDATE_SMOKE_CMD: step('smoke'),
				UPDATE_SWITCH_CMD: step('switch'),
				UPDATE_HEALTH_CMD: step('health'),
				UPDATE_ROLLBACK_CMD: step('rollback'),
				...env
			}
		});
		let err = '';
		proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
		this.running.push(proc);
		return { proc, stderr: () => err, stateFile: join(home, 'state'), log };
	}

	/** Kills the agent and everything it started (its process group), as a crash would. */
	async kill(a: Agent): Promise<void> {
		if (a.proc.exitCode !== null || a.proc.signalCode !== null) return;
		const exited = new Promise((r) => a.proc.once('exit', r));
		process.kill(-a.proc.pid!, 'SIGKILL');
		await exited;
	}

	/** Every agent still running, killed (afterAll). */
	killAll(): void {
		for (const p of this.running) if (p.exitCode === null && p.signalCode === null) process.kill(-p.pid!, 'SIGKILL');
	}
}

/** A node that is not reached over SSH, its agent enrolled (unless `enrol` is false). */
export async function pullNode(name: string, roles = ['web'], enrol = true): Promise<{ id: string; secret: string }> {
	const [cred] = await db().select().from(credentials).limit(1);
	const [node] = await db()
		.insert(nodes)
		.values({
			name,
			host: '192.0.2.1',
			credentialId: cred!.id,
			// No host key: the console never connects to a pull node, and a rollout takes it all the same.
			roles
		})
		.returning();
	if (!enrol) return { id: node!.id, secret: '' };
	const { secret } = await enrolAgent(systemActor, node!.id);
	return { id: node!.id, secret };
}

let release = 0;

/** A signed release (1.N.0) and its rollout to these nodes: immediate, 5 at a time, unless `options` say otherwise. */
export async function rolloutTo(
	nodeNames: string[],
	options: Record<string, unknown> = { failure_threshold_percent: 0, min_finished_nodes: 1 },
	sha = randomBytes(20).toString('hex')
) {
	release++;
	const m: Record<string, unknown> = {
		version: `1.${release}.0`,
		sha,
		channel: 'stable',
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	m.signature = hmacSignature(m, RELEASE_SECRET);
	const rel = await createRelease(systemActor, m);
	const { rollout } = await createRollout(
		systemActor,
		createRolloutSchema.parse({
			release_id: rel.id,
			strategy: 'immediate',
			target: { nodes: nodeNames },
			concurrency: 5,
			...options
		})
	);
	return { rollout: rollout!, sha, version: `1.${release}.0` };
}

/** Drives the rollout (driver turns) until it completes, pauses or fails. */
export async function driveUntilDone(id: string, ms = 60_000) {
	return waitFor(
		'the rollout to end',
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return ['completed', 'paused', 'failed'].includes(r.state) ? r : null;
		},
		ms
	);
}

/** A file's lines; none when it does not exist. */
export const lines = async (file: string) =>
	existsSync(file) ? (await readFile(file, 'utf8')).trim().split('\n') : [];
