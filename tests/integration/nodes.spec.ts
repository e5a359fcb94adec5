import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { credentials, nodes } from '../../src/lib/server/db/schema';
import { acceptHostKey } from '../../src/lib/server/fleet/host-keys';
import { checkNode } from '../../src/lib/server/fleet/checks';
import { createNode, listNodes, updateNode } from '../../src/lib/server/fleet/nodes';
import { createCredential, deleteCredential, unsealCredential } from '../../src/lib/server/keys/credentials';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';
import { backends } from '../support/databases';
import { registerDomains } from '../../src/lib/server/domains';

registerDomains();

let bed: Testbed;
beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 70 });
	useMasterKey(randomBytes(32));
}, 60_000);
afterAll(async () => {
	useMasterKey(undefined);
	await bed?.stop();
});

const keyDir = mkdtempSync(path.join(tmpdir(), 'flotilla-keys-'));
function makeKey(type: 'ed25519' | 'rsa' | 'ecdsa', passphrase = ''): string {
	const file = path.join(keyDir, `${type}-${randomBytes(3).toString('hex')}`);
	execFileSync('ssh-keygen', [
		'-q',
		'-t',
		type,
		'-N',
		passphrase,
		'-f',
		file,
		...(type === 'rsa' ? ['-b', '2048'] : [])
	]);
	return readFileSync(file, 'utf8');
}

describe.each(backends)('credentials and nodes on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let a: TestHost;
	let b: TestHost;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		[a, b] = bed.hosts as [TestHost, TestHost];
	});
	afterAll(async () => {
		useDatabase(undefined);
		await handle.close();
	});

	it('stores private keys of every kind sealed, never in clear, and gives back only the public half', async () => {
		for (const type of ['ed25519', 'rsa', 'ecdsa'] as const) {
			const privateKey = makeKey(type, type === 'rsa' ? 'secret words' : '');
			const cred = await createCredential(systemActor, {
				name: `key-${type}`,
				privateKey,
				passphrase: type === 'rsa' ? 'secret words' : undefined
			});
			expect(cred.fingerprint).toMatch(/^SHA256:/);
			expect(JSON.stringify(cred)).not.toContain('PRIVATE KEY');
			const [row] = await db()
				.select()
				.from(credentials)
				.where(sql`id = ${cred.id}`);
			expect(JSON.stringify(row)).not.toContain(privateKey.split('\n')[1]!);
			expect(JSON.stringify(row)).not.toContain('secret words');
			expect((await unsealCredential(cred.id)).privateKey).toBe(privateKey);
		}
	});

	it('refuses what is not a private key, or a wrong passphrase, naming the field', async () => {
		await expect(createCredential(systemActor, { name: 'junk', privateKey: 'hello' })).rejects.toMatchObject({
			status: 400,
			fields: { private_key: expect.any(String) }
		});
		const locked = makeKey('ed25519', 'right words');
		await expect(
			createCredential(systemActor, { name: 'locked', privateKey: locked, passphrase: 'wrong' })
		).rejects.toMatchObject({
			fields: { passphrase: 'does not open the key' }
		});
		await expect(createCredential(systemActor, { name: 'locked', privateKey: locked })).rejects.toMatchObject({
			fields: { passphrase: 'is required for this key' }
		});
		const pub = readFileSync(bed.clientPrivateKeyPath + '.pub', 'utf8');
		await expect(createCredential(systemActor, { name: 'public', privateKey: pub })).rejects.toMatchObject({
			status: 400
		});
		expect(
			await db()
				.select()
				.from(credentials)
				.where(sql`name in ('junk', 'locked', 'public')`)
		).toHaveLength(0);
	});

	it('finds an unknown key, pins it when accepted, then connects; a changed key is refused and marked', async () => {
		const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
		const node = await createNode(systemActor, {
			name: 'web-1',
			host: a.address,
			port: a.port,
			user: 'root',
			credential_id: cred.id,
			kind: 'server',
			roles: ['backend'],
			labels: { env: 'test' },
			policy: 'security',
			control_plane: false
		});
		expect(node.hostKeyStatus).toBe('unknown');

		const first = await checkNode(node.id);
		expect(first.result).toMatchObject({
			reachable: true,
			host_key_status: 'unknown',
			host_key_fingerprint: a.hostKeyFingerprint
		});
		expect(first.node.presentedFingerprint).toBe(a.hostKeyFingerprint);

		await acceptHostKey(systemActor, node.id, first.result.host_key_fingerprint!);
		const second = await checkNode(node.id);
		expect(second.result).toMatchObject({ reachable: true, host_key_status: 'pinned' });
		expect(second.result.uname).toMatch(/^Linux /);
		expect(second.result.latency_ms).toBeGreaterThanOrEqual(0);
		expect((await listNodes({ limit: 50, connection: 'reachable' })).items.map((n) => n.name)).toEqual(['web-1']);

		const fresh = await bed.changeHostKey(a);
		const third = await checkNode(node.id);
		expect(third.result).toMatchObject({ host_key_status: 'changed', host_key_fingerprint: fresh });
		expect(third.node.hostKeyFingerprint).toBe(second.node.hostKeyFingerprint);
		expect((await listNodes({ limit: 50, connection: 'host_key_changed' })).items).toHaveLength(1);
	});

	it('pins a fingerprint given at import, reaches nodes through a bastion, and reports unreachable ones', async () => {
		const [cred] = await db()
			.select()
			.from(credentials)
			.where(sql`name = 'testbed'`);
		const bastion = await createNode(systemActor, {
			name: 'bastion',
			host: b.address,
			port: 22,
			user: 'root',
			credential_id: cred!.id,
			kind: 'server',
			roles: [],
			labels: {},
			policy: 'manual',
			control_plane: false,
			host_key_fingerprint: b.hostKeyFingerprint
		});
		expect(bastion.hostKeyStatus).toBe('pinned');
		const behind = await createNode(systemActor, {
			name: 'behind-bastion',
			host: b.address,
			port: 22,
			user: 'root',
			credential_id: cred!.id,
			jump_node_id: bastion.id,
			kind: 'appliance',
			roles: [],
			labels: {},
			policy: 'full',
			control_plane: false,
			host_key_fingerprint: b.hostKeyFingerprint
		});
		expect((await checkNode(behind.id)).result).toMatchObject({ reachable: true, host_key_status: 'pinned' });

		await updateNode(systemActor, behind.id, { host: '127.0.1.249' });
		const gone = await checkNode(behind.id);
		expect(gone.result.reachable).toBe(false);
		expect(gone.result.error).toMatch(/unreachable|refused|open failed/i);
		expect((await listNodes({ limit: 50, connection: 'unreachable' })).items.map((n) => n.name)).toEqual([
			'behind-bastion'
		]);
	});

	it('will not delete a credential nodes still use, nor accept unknown references', async () => {
		const [cred] = await db()
			.select()
			.from(credentials)
			.where(sql`name = 'testbed'`);
		await expect(deleteCredential(systemActor, cred!.id)).rejects.toMatchObject({ status: 409 });
		await expect(
			createNode(systemActor, {
				name: 'orphan',
				host: 'example.org',
				port: 22,
				user: 'root',
				credential_id: '00000000-0000-4000-8000-000000000000',
				kind: 'server',
				roles: [],
				labels: {},
				policy: 'security',
				control_plane: false
			})
		).rejects.toMatchObject({ status: 400, fields: { credential_id: 'no such credential' } });
		expect(
			await db()
				.select()
				.from(nodes)
				.where(sql`name = 'orphan'`)
		).toHaveLength(0);
	});
});
