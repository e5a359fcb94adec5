import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { listAudit, type Actor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { auditLog, nodes } from '../../src/lib/server/db/schema';
import { checkNode } from '../../src/lib/server/fleet/checks';
import { createNode } from '../../src/lib/server/fleet/nodes';
import { importInventory, MAX_INVENTORY_BYTES, type ImportRequest } from '../../src/lib/server/inventory/import';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { writeInventories } from '../testbed/inventory.ts';
import { startTestbed, type Testbed } from '../testbed/testbed.ts';
import { backends } from '../support/databases';

/** The import as a service, on both back-ends; the HTTP contract and the page are in tests/e2e/inventory-import.spec.ts. */
let bed: Testbed;
let iniPath: string;
beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 240 });
	iniPath = (await writeInventories(bed)).ini;
	useMasterKey(randomBytes(32));
}, 60_000);
afterAll(async () => {
	useMasterKey(undefined);
	await bed?.stop();
});

const admin: Actor = { id: null, name: 'inventory-admin', via: 'session', ip: '127.0.0.1' };

const inventory = `[web]
web[1:2]
web3 ansible_host=10.0.0.13

[db]
db1 ansible_host=10.0.0.21 ansible_port=2222 flotilla_labels=env=prod

[db:vars]
ansible_user=postgres
`;

describe.each(backends)('inventory import on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let credentialId: string;
	const request = (over: Partial<ImportRequest> = {}): ImportRequest => ({
		text: inventory,
		credentialId,
		roleGroups: 'all',
		dryRun: false,
		...over
	});
	const nodeNames = async () => (await db().select({ name: nodes.name }).from(nodes)).map((r) => r.name).sort();

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		credentialId = (await createCredential(admin, { name: 'testbed', privateKey: bed.clientPrivateKey })).id;
	});
	afterAll(async () => {
		useDatabase(undefined);
		await handle.close();
	});
	beforeEach(async () => {
		await db().execute(sql`truncate ${nodes}, ${auditLog} cascade`);
	});

	it('previews without writing anything, then imports exactly the preview, audited', async () => {
		const preview = await importInventory(admin, request({ dryRun: true }));
		expect(preview).toMatchObject({ dry_run: true, format: 'ini', created: 4, skipped: 0, errors: [] });
		expect(await nodeNames()).toEqual([]);
		expect(await db().select().from(auditLog)).toHaveLength(0);

		const done = await importInventory(admin, request());
		expect(done).toMatchObject({ dry_run: false, created: 4, skipped: 0 });
		expect(done.nodes.map(({ id: _, ...n }) => n)).toEqual(preview.nodes);
		expect(await nodeNames()).toEqual(['db1', 'web1', 'web2', 'web3']);
		const [db1] = await db()
			.select()
			.from(nodes)
			.where(sql`name = 'db1'`);
		expect(db1).toMatchObject({
			host: '10.0.0.21',
			port: 2222,
			username: 'postgres',
			roles: ['db'],
			labels: { env: 'prod' },
			credentialId,
			hostKeyStatus: 'unknown',
			hostKeyFingerprint: null
		});
		const audit = await listAudit({ limit: 50 });
		expect(audit.items.map((r) => r.action).sort()).toEqual([
			'inventory.import',
			'node.create',
			'node.create',
			'node.create',
			'node.create'
		]);
		expect(audit.items.find((r) => r.action === 'inventory.import')).toMatchObject({
			actorName: 'inventory-admin',
			details: { format: 'ini', created: 4, skipped: [] }
		});
		expect(audit.items.find((r) => r.targetId === db1!.id)).toMatchObject({ action: 'node.create' });
	});

	it('skips nodes whose name exists and leaves them as they are', async () => {
		await createNode(admin, {
			name: 'web2',
			host: 'keep.example',
			port: 22,
			user: 'root',
			credential_id: credentialId,
			kind: 'server',
			roles: ['mine'],
			labels: {},
			policy: 'manual',
			control_plane: false
		});
		const preview = await importInventory(admin, request({ dryRun: true }));
		expect(preview.nodes.find((n) => n.name === 'web2')).toMatchObject({ action: 'skip' });
		expect(preview).toMatchObject({ created: 3, skipped: 1 });
		const done = await importInventory(admin, request());
		expect(done).toMatchObject({ created: 3, skipped: 1 });
		const [web2] = await db()
			.select()
			.from(nodes)
			.where(sql`name = 'web2'`);
		expect(web2).toMatchObject({ host: 'keep.example', roles: ['mine'], policy: 'manual' });
		// Importing the same file again changes nothing.
		expect(await importInventory(admin, request())).toMatchObject({ created: 0, skipped: 4 });
	});

	it('warns about two hosts on one address, in the inventory and against the fleet', async () => {
		await createNode(admin, {
			name: 'old-db',
			host: '10.0.0.21',
			port: 2222,
			user: 'root',
			credential_id: credentialId,
			kind: 'server',
			roles: [],
			labels: {},
			policy: 'manual',
			control_plane: false
		});
		const text = `${inventory}\n[cache]\ncache1 ansible_host=10.0.0.13\n`;
		const preview = await importInventory(admin, request({ text, dryRun: true }));
		expect(preview.warnings).toEqual([
			{ line: 6, host: 'db1', message: '10.0.0.21:2222 is also the address of node old-db' },
			{
				line: 12,
				host: 'cache1',
				message: '10.0.0.13:22 is also the address of node web3 (line 3 of this inventory)'
			}
		]);
	});

	it('writes nothing when any host is wrong, and says where', async () => {
		const bad = `${inventory}\n[cache]\ncache1 ansible_port=99999\n`;
		const result = await importInventory(admin, request({ text: bad }));
		expect(result.dry_run).toBe(true);
		expect(result.errors).toEqual([{ line: 12, host: 'cache1', message: 'ansible_port: must be 1 to 65535' }]);
		expect(await nodeNames()).toEqual([]);
		expect(await db().select().from(auditLog)).toHaveLength(0);
	});

	it('rolls the whole import back when its last write fails', async () => {
		// The nodes are inserted first and the audit rows last: refusing the summary row must take the nodes
		// (and the other audit rows) with it.
		await db().execute(sql`
			create function refuse_import_audit() returns trigger language plpgsql as $$
			begin
				if new.action = 'inventory.import' then raise exception 'refused for the test'; end if;
				return new;
			end $$`);
		await db().execute(
			sql`create trigger refuse_import_audit before insert on audit_log for each row execute function refuse_import_audit()`
		);
		try {
			const failure = await importInventory(admin, request()).catch((err: Error) => err);
			expect(String((failure as Error).cause ?? failure)).toMatch(/refused for the test/);
			expect(await nodeNames()).toEqual([]);
			expect(await db().select().from(auditLog)).toHaveLength(0);
		} finally {
			await db().execute(sql`drop trigger refuse_import_audit on audit_log`);
			await db().execute(sql`drop function refuse_import_audit()`);
		}
		expect((await importInventory(admin, request())).created).toBe(4);
	});

	it('refuses a missing credential, unknown role groups and oversized text, naming the field', async () => {
		await expect(
			importInventory(admin, request({ credentialId: '00000000-0000-4000-8000-000000000000' }))
		).rejects.toMatchObject({ status: 400, fields: { credential_id: 'no such credential' } });
		await expect(importInventory(admin, request({ roleGroups: ['web', 'nosuch'] }))).rejects.toMatchObject({
			status: 400,
			fields: { role_groups: expect.stringContaining('nosuch') }
		});
		await expect(
			importInventory(admin, request({ text: `# ${'x'.repeat(MAX_INVENTORY_BYTES)}\n` }))
		).rejects.toMatchObject({ status: 413, fields: { inventory: expect.any(String) } });
		await expect(importInventory(admin, request({ text: ' \n' }))).rejects.toMatchObject({ status: 400 });
		expect(await nodeNames()).toEqual([]);
	});

	it('imports the inventory `npm run testbed` writes for Ansible, and the nodes it makes answer', async () => {
		const text = readFileSync(iniPath, 'utf8');
		const result = await importInventory(admin, request({ text }));
		expect(result.errors).toEqual([]);
		expect(result.nodes.map((n) => [n.name, n.host, n.port, n.user, n.action])).toEqual(
			bed.hosts.map((h) => [h.name, h.address, h.port, h.user, 'create'])
		);
		expect(result.warnings.map((w) => w.message)).toEqual(
			expect.arrayContaining([expect.stringMatching(/^ansible_ssh_common_args is ignored/)])
		);
		// No fingerprint in that file: the first check finds the host's key for an admin to accept.
		const [first] = await db()
			.select()
			.from(nodes)
			.where(sql`name = ${bed.hosts[0]!.name}`);
		const checked = await checkNode(first!.id);
		expect(checked.result).toMatchObject({
			reachable: true,
			host_key_status: 'unknown',
			host_key_fingerprint: bed.hosts[0]!.hostKeyFingerprint
		});
	});
});
