// A console's engine in a process of its own, for tests that SIGKILL it or run two side by side.
// Usage: node --import ./tests/support/ts-hooks.mjs tests/support/engine-process.ts
// Env: DATABASE_URL, FLOTILLA_TEST_MASTER_KEY (hex), LEASE_MS, ENGINE_CONCURRENCY (default 50). Prints
// `ready <instance id>`, then one JSON line per engine event its bus delivers (so a test can see what this
// instance's SSE clients would see). A line `cancel <run id>` on stdin cancels that run through this
// instance, as its API would, and answers `cancelled <run id>` (or `error <message>`).
import path from 'node:path';
import { createInterface } from 'node:readline';
import { systemActor } from '../../src/lib/server/audit/index.ts';
import { useMasterKey } from '../../src/lib/server/crypto/master-key.ts';
import { openDatabase, useDatabase } from '../../src/lib/server/db/index.ts';
import { eventBus } from '../../src/lib/server/engine/events.ts';
import { registerFlow } from '../../src/lib/server/engine/flows.ts';
import { registerFleet } from '../../src/lib/server/fleet/register.ts';
import { instanceId, startEngine, stopEngine } from '../../src/lib/server/engine/index.ts';
import { cancelRun } from '../../src/lib/server/engine/runs.ts';
import { exclusiveFlow } from './exclusive-flow.ts';
import { sequenceFlow } from './flows.ts';

const handle = await openDatabase({ url: process.env.DATABASE_URL, migrationsDir: path.resolve('drizzle') });
useDatabase(handle);
useMasterKey(Buffer.from(process.env.FLOTILLA_TEST_MASTER_KEY!, 'hex'));
registerFlow(exclusiveFlow);
registerFlow(sequenceFlow);
registerFleet();
const leaseMs = Number(process.env.LEASE_MS ?? 3_000);
await startEngine({ concurrency: Number(process.env.ENGINE_CONCURRENCY ?? 50), leaseMs, sweepMs: 1_000 });
eventBus.subscribe((e) => {
	if (e.type !== 'task.output')
		process.stdout.write(`${JSON.stringify({ id: e.id, type: e.type, task: e.task_id, data: e.data })}\n`);
});
createInterface({ input: process.stdin }).on('line', (line) => {
	const cancel = /^cancel (\S+)$/.exec(line);
	if (!cancel) return;
	cancelRun(systemActor, cancel[1]!).then(
		() => process.stdout.write(`cancelled ${cancel[1]}\n`),
		(err: Error) => process.stdout.write(`error ${err.message}\n`)
	);
});
process.stdout.write(`ready ${instanceId}\n`);
process.once('SIGTERM', async () => {
	await stopEngine();
	await handle.close();
	process.exit(0);
});
