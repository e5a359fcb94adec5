import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { codePlanSchema } from '../../src/lib/schemas/responses';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit, pinCommit } from '../../src/lib/server/codesync/notify';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole } from '../../src/lib/server/codesync/roles';
import { planView } from '../../src/lib/server/codesync/update-forms';
import { recordSynced } from '../../src/lib/server/codesync/versions';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { drainEvents } from '../../src/lib/server/engine/events';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { newHostKey } from '../../src/lib/server/sim/server';
import { freshPostgres } from '../support/databases';
import { createOrigin, originCommits } from '../testbed/repos';

/**
 * The plan of an update flags a target the console can tell is not there (docs/code-sync.md, "Update All"): a
 * `push` role's commit that its console checkout does not hold. Nothing here connects to a node: the plan is
 * read from the database and the console's own git checkout.
 */

registerDomains();
beforeAll(() => useMasterKey(randomBytes(32)));
afterAll(() => useMasterKey(undefined));

describe('unknown target commits in the plan', () => {
	let handle: DatabaseHandle;
	let dir: string;
	beforeAll(async () => {
		handle = await freshPostgres();
		useDatabase(handle);
		dir = await mkdtemp(join(tmpdir(), 'flotilla-unknown-target-'));
	});
	afterAll(async () => {
		await drainEvents();
		useDatabase(undefined);
		await handle.close();
		await rm(dir, { recursive: true, force: true });
	});

	it('lists a push role’s commit missing from the console’s checkout, and the dialog warns of it', async () => {
		const origin = await createOrigin(dir, 'frontend');
		const [first, , known] = await originCommits(origin);
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'frontend',
				path: '/opt/frontend',
				units: ['frontend.service'],
				method: 'push',
				source_repo: origin.work
			})
		);
		// A git role too: its commit is fetched by the node from its own remote, which the console cannot ask.
		await createRole(
			systemActor,
			createRoleSchema.parse({ name: 'backend', path: '/opt/backend', units: ['backend.service'] })
		);
		const cred = await createCredential(systemActor, { name: 'k-unknown', privateKey: newHostKey() });
		const [node] = await db()
			.insert(nodes)
			.values({
				name: 'web-1',
				host: '127.0.0.1',
				port: 22,
				credentialId: cred.id,
				roles: ['frontend', 'backend'],
				hostKeyStatus: 'pinned',
				hostKeyFingerprint: 'SHA256:x',
				reachable: true
			})
			.returning({ id: nodes.id });
		await recordSynced(node!.id, 'frontend', first!, null);
		await recordSynced(node!.id, 'backend', 'a'.repeat(40), null);

		await notifyCommit(systemActor, { commit: known!, changed_roles: ['frontend'] });
		await notifyCommit(systemActor, { commit: 'b'.repeat(40), changed_roles: ['backend'] });
		const clean = (await triggerUpdate(systemActor, { dry_run: true })).plan;
		expect(clean.targets).toEqual({ frontend: known, backend: 'b'.repeat(40) });
		expect(clean.unknown_targets).toEqual([]);
		expect(planView(clean).roles.map((r) => [r.role, r.unknown])).toEqual([
			['backend', null],
			['frontend', null]
		]);

		// Any 40 hex digits can be notified: the console's checkout does not have this one.
		const bogus = 'c0ffee'.padEnd(40, '1');
		await notifyCommit(systemActor, { commit: bogus, changed_roles: ['frontend'] });
		const flagged = (await triggerUpdate(systemActor, { dry_run: true })).plan;
		expect(codePlanSchema.parse(flagged).unknown_targets).toEqual([
			{ role: 'frontend', commit: bogus, reason: `not in the console's checkout ${origin.work}` }
		]);
		const view = planView(flagged);
		expect(view.roles.find((r) => r.role === 'frontend')!.unknown).toBe(`not in the console's checkout ${origin.work}`);
		expect(view.roles.find((r) => r.role === 'backend')!.unknown).toBeNull();
		expect(view.warnings[0]).toBe(
			`frontend: commit ${bogus.slice(0, 12)} is unknown (not in the console's checkout ${origin.work}); its update will fail on every node. Pin the role to a known commit on the Code Sync page.`
		);

		// Pinned back to a commit the checkout has: the warning is gone.
		await pinCommit(systemActor, 'frontend', known!);
		expect((await triggerUpdate(systemActor, { dry_run: true })).plan.unknown_targets).toEqual([]);
	});

	it('says so when the console’s checkout of a push role cannot be read', async () => {
		const missing = join(dir, 'gone');
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'docs',
				path: '/opt/docs',
				units: ['x.service'],
				method: 'push',
				source_repo: missing
			})
		);
		await db()
			.update(nodes)
			.set({ roles: ['docs'] });
		await notifyCommit(systemActor, { commit: 'd'.repeat(40), changed_roles: ['docs'] });
		const plan = (await triggerUpdate(systemActor, { dry_run: true, scope: { roles: ['docs'] } })).plan;
		expect(plan.unknown_targets).toHaveLength(1);
		expect(plan.unknown_targets[0]).toMatchObject({ role: 'docs', commit: 'd'.repeat(40) });
		expect(plan.unknown_targets[0]!.reason).toMatch(
			new RegExp(`^the console's checkout ${missing} cannot be read \\(.+\\)$`)
		);
	});
});
