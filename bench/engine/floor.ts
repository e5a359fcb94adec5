// The floor under the engine benchmark: the same connections and execs through the SSH layer alone, with no
// engine, no database and no events. Whatever the engine adds to this is its own overhead.
// Usage: node --import ./tests/support/ts-hooks.mjs bench/engine/floor.ts
// Env: FLEET_FILE, TASKS, CONCURRENCY. Prints `ready` once warmed up, measures on `go`, prints `result <json>`.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { connect } from '../../src/lib/server/ssh/connection.ts';
import { sh } from '../../src/lib/server/ssh/shell.ts';
import { stepCount, stepMs } from './flows.ts';

const env = process.env;
const fleet = JSON.parse(readFileSync(env.FLEET_FILE!, 'utf8')) as {
	clientKey: string;
	hosts: { name: string; address: string; port: number; fingerprint: string }[];
};
const taskCount = Number(env.TASKS);
const concurrency = Number(env.CONCURRENCY);

async function task(h: (typeof fleet.hosts)[number]): Promise<void> {
	const conn = await connect(
		{
			host: h.address,
			port: h.port,
			username: 'root',
			privateKey: fleet.clientKey,
			hostKeyFingerprint: h.fingerprint
		},
		{ readyTimeoutMs: 15_000 }
	);
	try {
		for (let i = 0; i < stepCount; i++) {
			const r = await conn.exec(sh`sleep ${String(stepMs / 1000)}`, { deadlineMs: 60_000 });
			if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`);
		}
	} finally {
		conn.close();
	}
}

async function runAll(hosts: typeof fleet.hosts): Promise<number> {
	const started = performance.now();
	let next = 0;
	await Promise.all(
		Array.from({ length: Math.min(concurrency, hosts.length) }, async () => {
			while (next < hosts.length) await task(hosts[next++]!);
		})
	);
	return performance.now() - started;
}

// The same warm-up as the console's; then the measured run on `go`, so that the fleet's CPU can be read around it.
await runAll(fleet.hosts.slice(0, concurrency));
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) if (line === 'go') break;
const cpu = process.cpuUsage();
const wallMs = await runAll(fleet.hosts.slice(0, taskCount));
const c = process.cpuUsage(cpu);
process.stdout.write(`result ${JSON.stringify({ wallMs, cpuMs: (c.user + c.system) / 1000 })}\n`);
process.exit(0);
