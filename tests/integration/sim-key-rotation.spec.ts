import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateKeysSchema } from '../../src/lib/schemas/ssh-keys';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { credentials, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { driveKeyRotations } from '../../src/lib/server/keys/driver';
import { tryLogin } from '../../src/lib/server/keys/login';
import { getKeyRotation, startKeyRotation, type HostAccess } from '../../src/lib/server/keys/rotation';
import { authorizedKeysPath } from '../../src/lib/server/sim/authorized-keys';
import { backends } from '../support/databases';
import { waitFor } from '../support/engine';
import { startSimFleet, type SimFleet } from '../support/sim-fleet';

/**
 * The real key rotation (keys/) against simulated hosts, as the demo fleet runs it: the hosts let in exactly the
 * keys their authorized_keys lists, so afterwards the old key is refused and the new one and the safety net log in.
 */

registerDomains();

const foreign = '# ops\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhY2t1cC0w backup@vault\n';

describe.each(backends)('key rotation on simulated hosts on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let fleet: SimFleet;
	let oldCredential: string;
	const names = ['skr-0001', 'skr-0002', 'skr-0003'];
	const nodeOf = async (name: string) => (await db().select().from(nodes).where(eq(nodes.name, name)))[0]!;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		fleet = await startSimFleet(3, 'skr');
		oldCredential = (await nodeOf(names[0]!)).credentialId;
		// Another person's key sits before the console's, as on a real host.
		for (const h of fleet.hosts) h.model.files.set(authorizedKeysPath, foreign + h.model.files.get(authorizedKeysPath));
		await startEngine({ concurrency: 10, leaseMs: 5_000, sweepMs: 1_000 });
	}, 60_000);
	afterAll(async () => {
		await stopEngine();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	it('the dry run reads what each simulated host lets in', async () => {
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names, dry_run: true }));
		const report = (started as { dryRun: HostAccess[] }).dryRun;
		expect(report.map((r) => [r.node, r.reachable])).toEqual(names.map((n) => [n, true]));
		for (const r of report) {
			expect(r.survey!.consoleKeys).toHaveLength(1);
			expect(r.survey!.otherKeys.map((k) => k.comment)).toEqual(['backup@vault']);
			expect(r.survey!.passwordLogin).toBe('no');
		}
	});

	it('after a rotation the old key no longer logs into the simulated hosts; the new key and the safety net do', async () => {
		for (const name of names) expect(await tryLogin(await nodeOf(name), oldCredential)).toBeNull();
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const r = await waitFor(
			'the rotation to settle',
			async () => {
				await driveKeyRotations();
				const now = await getKeyRotation(started.rotationId);
				return now.state !== 'running' ? now : null;
			},
			60_000
		);
		expect(r.state).toBe('completed');
		expect(r.nodes.map((n) => [n.state, n.reached])).toEqual(names.map(() => ['done', 'K5']));
		const [fresh] = await db().select().from(credentials).where(eq(credentials.id, r.newCredentialId!));
		for (const name of names) {
			const node = await nodeOf(name);
			expect(node.credentialId).toBe(r.newCredentialId);
			expect(await tryLogin(node, oldCredential)).toMatch(/auth/i);
			expect(await tryLogin(node, r.newCredentialId!)).toBeNull();
			expect(await tryLogin(node, r.safetyNetCredentialId!)).toBeNull();
			const file = fleet.byName.get(name)!.model.files.get(authorizedKeysPath)!;
			expect(file.startsWith(foreign)).toBe(true);
			expect(file).toContain(`${fresh!.publicKey} flotilla:primary:${fresh!.id}`);
		}
	});
});
