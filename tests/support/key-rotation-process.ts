// A console that drives SSH key rotations, in a process of its own, for the test that SIGKILLs it mid-phase.
// Usage: node --experimental-transform-types --import ./tests/support/ts-hooks.mjs tests/support/key-rotation-process.ts
// Env: DATABASE_URL, FLOTILLA_TEST_MASTER_KEY (hex), LEASE_MS. Prints `ready`; a line `rotate <json body>` on
// stdin starts a rotation as the API would and answers `started <rotation id>` (or `error <message>`). The
// driver turns every 200 ms, as the console's periodic job does every few seconds.
import path from 'node:path';
import { createInterface } from 'node:readline';
import { rotateKeysSchema } from '../../src/lib/schemas/ssh-keys.ts';
import { systemActor } from '../../src/lib/server/audit/index.ts';
import { useMasterKey } from '../../src/lib/server/crypto/master-key.ts';
import { openDatabase, useDatabase } from '../../src/lib/server/db/index.ts';
import { registerDomains } from '../../src/lib/server/domains.ts';
import { startEngine } from '../../src/lib/server/engine/index.ts';
import { driveKeyRotations } from '../../src/lib/server/keys/driver.ts';
import { startKeyRotation } from '../../src/lib/server/keys/rotation.ts';

const handle = await openDatabase({ url: process.env.DATABASE_URL, migrationsDir: path.resolve('drizzle') });
useDatabase(handle);
useMasterKey(Buffer.from(process.env.FLOTILLA_TEST_MASTER_KEY!, 'hex'));
registerDomains();
await startEngine({ concurrency: 50, leaseMs: Number(process.env.LEASE_MS ?? 3_000), sweepMs: 500 });
setInterval(() => void driveKeyRotations().catch(() => {}), 200);
createInterface({ input: process.stdin }).on('line', (line) => {
	const m = /^rotate (.+)$/.exec(line);
	if (!m) return;
	startKeyRotation(systemActor, rotateKeysSchema.parse(JSON.parse(m[1]!))).then(
		(r) => process.stdout.write(`started ${'rotationId' in r ? r.rotationId : 'dry-run'}\n`),
		(err: Error) => process.stdout.write(`error ${err.message}\n`)
	);
});
process.stdout.write('ready\n');
