/**
 * The console as it starts (src/lib/server/startup.ts), in the benchmark's own process, on a throwaway
 * PostgreSQL: the database migrated, a master key, every domain's flows registered, the testbed's hosts
 * registered as nodes with their host keys pinned, and the engine running with the console's defaults
 * unless the benchmark says otherwise.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { systemActor } from '../src/lib/server/audit';
import { config } from '../src/lib/server/config';
import { useMasterKey } from '../src/lib/server/crypto/master-key';
import { db, openDatabase, useDatabase } from '../src/lib/server/db';
import { eq } from 'drizzle-orm';
import { nodes, runs } from '../src/lib/server/db/schema';
import { registerDomains } from '../src/lib/server/domains';
import { startEngine, stopEngine } from '../src/lib/server/engine';
import { createCredential } from '../src/lib/server/keys/credentials';
import { closeWarmConnections } from '../src/lib/server/ssh/warm';
import type { Testbed } from '../tests/testbed/testbed.ts';
import { measureUsage, type Usage } from './common';

export interface BenchConsoleOptions {
	/** Columns every node gets on top of its address, key and credential (roles, kind). */
	node?: Partial<typeof nodes.$inferInsert>;
	/** The engine's settings; the console's configured ones when absent. */
	engine?: Parameters<typeof startEngine>[0];
	/** What the benchmark sets up before the domains register (an image store, release keys). */
	configure?: () => void;
}

/** Starts the console on `url` for the testbed's hosts; `stop` undoes it all (and is safe after a failed start). */
export async function startBenchConsole(
	url: string,
	bed: Testbed,
	options: BenchConsoleOptions = {}
): Promise<{ stop: () => Promise<void> }> {
	const database = await openDatabase({ url, migrationsDir: resolve('drizzle') });
	let engine = false;
	const stop = async () => {
		if (engine) await stopEngine();
		useMasterKey(undefined);
		useDatabase(undefined);
		await database.close();
	};
	try {
		useDatabase(database);
		useMasterKey(randomBytes(32));
		options.configure?.();
		registerDomains();
		const credential = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
		await db()
			.insert(nodes)
			.values(
				bed.hosts.map((host) => ({
					name: host.name,
					host: host.address,
					port: host.port,
					credentialId: credential.id,
					hostKeyFingerprint: host.hostKeyFingerprint,
					hostKeyStatus: 'pinned' as const,
					...options.node
				}))
			);
		const cfg = config();
		await startEngine(
			options.engine ?? {
				concurrency: cfg.engineConcurrency,
				leaseMs: cfg.taskLeaseMs,
				sweepMs: Math.min(5_000, cfg.taskLeaseMs)
			}
		);
		engine = true;
		return { stop };
	} catch (error) {
		await stop();
		throw error;
	}
}

/**
 * Waits for a run to end by reading its row every 50 ms, and answers it. Only the row: the scan benchmark used
 * to read the whole run (its 100 tasks and their steps) every 20 ms, CPU the measured console then lacked.
 */
export async function waitForRunEnd(
	runId: string,
	timeoutMs: number
): Promise<{ state: string; endedAt: Date; reason: string | null }> {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const [r] = await db()
			.select({ state: runs.state, endedAt: runs.endedAt, reason: runs.reason })
			.from(runs)
			.where(eq(runs.id, runId));
		if (r?.endedAt) return { ...r, endedAt: r.endedAt };
		if (Date.now() > until) throw new Error(`Run ${runId} is still ${r?.state} after ${timeoutMs} ms`);
		await new Promise((resolve) => setTimeout(resolve, 50));
	}
}

/**
 * One measured round of a run (the scans): no warm session left from the round before, so every round logs in as
 * every other tool's does; timed from the call that starts it to its end as the engine records it, with the CPU
 * the console and PostgreSQL used meanwhile. Fails unless the run succeeded.
 */
export async function timeRun(
	postmasterPid: number,
	start: () => Promise<string>
): Promise<{ seconds: number; usage: Usage }> {
	closeWarmConnections();
	const usage = await measureUsage(postmasterPid);
	const started = Date.now();
	const r = await waitForRunEnd(await start(), 600_000);
	if (r.state !== 'succeeded') throw new Error(`run ended ${r.state} (${r.reason})`);
	return { seconds: (r.endedAt.getTime() - started) / 1000, usage: await usage() };
}
