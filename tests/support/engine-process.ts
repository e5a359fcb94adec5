// A console's engine in a process of its own, for tests that SIGKILL it or run two side by side.
// Usage: node --import ./tests/support/ts-hooks.mjs tests/support/engine-process.ts
// Env: DATABASE_URL, FLOTILLA_TEST_MASTER_KEY (hex), LEASE_MS. Prints `ready <instance id>`, then one JSON
// line per engine event its bus delivers (so a test can see what this instance's SSE clients would see).
import path from 'node:path';
import { useMasterKey } from '../../src/lib/server/crypto/master-key.ts';
import { openDatabase, useDatabase } from '../../src/lib/server/db/index.ts';
import { eventBus } from '../../src/lib/server/engine/events.ts';
import { registerFlow } from '../../src/lib/server/engine/flows.ts';
import { instanceId, startEngine, stopEngine } from '../../src/lib/server/engine/index.ts';
import { exclusiveFlow } from './exclusive-flow.ts';

const handle = await openDatabase({ url: process.env.DATABASE_URL, migrationsDir: path.resolve('drizzle') });
useDatabase(handle);
useMasterKey(Buffer.from(process.env.FLOTILLA_TEST_MASTER_KEY!, 'hex'));
registerFlow(exclusiveFlow);
const leaseMs = Number(process.env.LEASE_MS ?? 3_000);
await startEngine({ concurrency: 50, leaseMs, sweepMs: 1_000 });
eventBus.subscribe((e) => {
	if (e.type !== 'task.output')
		process.stdout.write(`${JSON.stringify({ id: e.id, type: e.type, task: e.task_id, data: e.data })}\n`);
});
process.stdout.write(`ready ${instanceId}\n`);
process.once('SIGTERM', async () => {
	await stopEngine();
	await handle.close();
	process.exit(0);
});
