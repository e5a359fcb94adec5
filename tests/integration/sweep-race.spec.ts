import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { runHealthSweep } from '../../src/lib/server/fleet/sweep';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodeCodeVersions, nodes, runs, tasks } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { freshPostgres } from '../support/databases';
import { waitFor } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';
import { registerDomains } from '../../src/lib/server/domains';

registerDomains();

/**
 * The health sweep skips nodes with a task running, but a task may start at any moment while the sweep is
 * connected and looking. What it saw then is out of date by the time it writes: the write must not land.
 * The role's health check waits for the test's signal on the host, which pins the moment a task starts.
 */

let bed: Testbed;
let host: TestHost;
let handle: DatabaseHandle;
let nodeId: string;
const probe = 'touch /root/probing; while [ ! -e /root/go ]; do sleep 0.1; done\n';

beforeAll(async () => {
	bed = await startTestbed({ hosts: 1, firstHost: 184, roles: ['web'] });
	host = bed.hosts[0]!;
	handle = await freshPostgres('flotilla_sweep_race');
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	await writeFile(join(host.root, 'opt', 'web', 'probe.sh'), probe);
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: 'web',
			path: '/opt/web',
			units: ['web.service'],
			health: { type: 'command', command: ['sh', 'probe.sh'] }
		})
	);
	const cred = await createCredential(systemActor, { name: 'sweep', privateKey: bed.clientPrivateKey });
	const [row] = await db()
		.insert(nodes)
		.values({
			name: host.name,
			host: host.address,
			port: host.port,
			credentialId: cred.id,
			roles: ['web'],
			hostKeyFingerprint: host.hostKeyFingerprint,
			hostKeyStatus: 'pinned'
		})
		.returning({ id: nodes.id });
	nodeId = row!.id;
}, 120_000);

afterAll(async () => {
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await bed?.stop();
});

const recorded = async () =>
	(
		await db()
			.select()
			.from(nodeCodeVersions)
			.where(and(eq(nodeCodeVersions.nodeId, nodeId), eq(nodeCodeVersions.role, 'web')))
	)[0];

it('does not record what it saw when a task started on the node while it was looking', async () => {
	const go = join(host.root, 'root', 'go');
	const probing = join(host.root, 'root', 'probing');
	// A first sweep with nothing in the way records the role's health.
	await writeFile(go, '');
	await runHealthSweep(1);
	const first = await recorded();
	expect(first?.healthy).toBe(true);

	await rm(go);
	await rm(probing);
	const sweeping = runHealthSweep(1);
	await waitFor('the sweep probing the role on the host', async () => existsSync(probing));
	// An update's task claims the node now, as the engine's claim does.
	const [run] = await db()
		.insert(runs)
		.values({ kind: 'code-sync', title: 'meanwhile', createdBy: 'test', state: 'running', options: { concurrency: 5 } })
		.returning();
	await db()
		.insert(tasks)
		.values({ runId: run!.id, nodeId, nodeName: host.name, seq: 0, state: 'running', startedAt: new Date() });
	await writeFile(go, '');
	const result = await sweeping;
	expect(result.checked).toBe(1);
	const after = await recorded();
	expect(after!.healthCheckedAt!.getTime()).toBe(first!.healthCheckedAt!.getTime());
});
