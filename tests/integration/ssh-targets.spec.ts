import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { nodes, type Node } from '../../src/lib/server/db/schema';
import { sshTargetFor } from '../../src/lib/server/fleet/targets';
import { createCredential, credentialRow } from '../../src/lib/server/keys/credentials';
import { sshTargetWith } from '../../src/lib/server/keys/targets';
import { backends } from '../support/databases';

/**
 * The fleet's targets (a node's own credential) and the key rotation's (a key the node's record does not name
 * yet) are one piece: the node's key is the one asked for, a bastion is always reached with its own, and a chain
 * too long is refused the same way by both.
 */

const keyDir = mkdtempSync(path.join(tmpdir(), 'flotilla-targets-'));
function makeKey(): string {
	const file = path.join(keyDir, `k-${randomBytes(3).toString('hex')}`);
	execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', file]);
	return readFileSync(file, 'utf8');
}

describe.each(backends)('ssh targets on $name', ({ open }) => {
	let handle: DatabaseHandle;
	const keys = { bastion: makeKey(), own: makeKey(), rotated: makeKey() };
	const ids: Record<keyof typeof keys, string> = { bastion: '', own: '', rotated: '' };
	let bastion: Node, inner: Node;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		for (const name of Object.keys(keys) as (keyof typeof keys)[]) {
			ids[name] = (await createCredential(systemActor, { name, privateKey: keys[name] })).id;
		}
		bastion = (
			await db()
				.insert(nodes)
				.values({ name: 'tg-bastion', host: '127.0.9.1', credentialId: ids.bastion, hostKeyFingerprint: 'SHA256:b' })
				.returning()
		)[0]!;
		inner = (
			await db()
				.insert(nodes)
				.values({
					name: 'tg-inner',
					host: '10.0.0.5',
					port: 2222,
					username: 'deploy',
					credentialId: ids.own,
					jumpNodeId: bastion.id,
					hostKeyFingerprint: 'SHA256:i'
				})
				.returning()
		)[0]!;
	});
	afterAll(async () => {
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	it("reaches a node with the key asked for, through its bastion with the bastion's own key", async () => {
		const own = await sshTargetFor(inner);
		expect(own).toMatchObject({
			host: '10.0.0.5',
			port: 2222,
			username: 'deploy',
			privateKey: keys.own,
			hostKeyFingerprint: 'SHA256:i',
			jump: { host: '127.0.9.1', privateKey: keys.bastion, hostKeyFingerprint: 'SHA256:b', jump: undefined }
		});
		expect(await sshTargetWith(inner, await credentialRow(ids.own))).toEqual(own);
		// The rotation's login with a key the node's record does not name: only the last hop changes.
		const rotated = await sshTargetWith(inner, await credentialRow(ids.rotated));
		expect(rotated).toEqual({ ...own, privateKey: keys.rotated });
		// A row the engine passes along is used when it is the node's own; another credential's is not.
		expect(await sshTargetFor(inner, 0, await credentialRow(ids.rotated))).toEqual(own);
	});

	it('refuses a bastion chain longer than three hops, for the fleet and for the rotation alike', async () => {
		await db().update(nodes).set({ jumpNodeId: inner.id }).where(eq(nodes.id, bastion.id));
		try {
			const looped = (await db().select().from(nodes).where(eq(nodes.id, inner.id)))[0]!;
			await expect(sshTargetFor(looped)).rejects.toThrow('Bastion chains are limited to 3 hops');
			await expect(sshTargetWith(looped, await credentialRow(ids.rotated))).rejects.toThrow(
				'Bastion chains are limited to 3 hops'
			);
		} finally {
			await db().update(nodes).set({ jumpNodeId: null }).where(eq(nodes.id, bastion.id));
		}
	});
});
