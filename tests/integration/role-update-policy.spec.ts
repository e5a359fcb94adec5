import { randomBytes, randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog, codeRoles, credentials, nodes } from '../../src/lib/server/db/schema';
import { PATCH as patchRole } from '../../src/routes/api/roles/[name]/+server';
import { GET as listSystemUpdates } from '../../src/routes/api/updates/system/+server';
import { freshPostgres } from '../support/databases';

/**
 * A role's default system-update policy (docs/system-updates.md, "Policies") through the API: set on the role
 * with PATCH /api/roles/{name}, refused naming the field when invalid (nothing changed), and applied by
 * GET /api/updates/system to the nodes without a policy of their own. No node is reached: no host is needed.
 */

let pg: Awaited<ReturnType<typeof freshPostgres>>;

const event = (url: URL, request: Request, params: Record<string, string>) =>
	({ request, url, params, locals: {}, getClientAddress: () => '127.0.0.1' }) as never;

async function patch(name: string, body: unknown): Promise<Response> {
	const url = new URL(`http://console/api/roles/${name}`);
	const request = new Request(url, {
		method: 'PATCH',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify(body)
	});
	return patchRole(event(url, request, { name }));
}

async function listed(): Promise<Record<string, { policy: string; policy_role: string | null }>> {
	const url = new URL('http://console/api/updates/system');
	const res = await listSystemUpdates(event(url, new Request(url), {}));
	expect(res.status).toBe(200);
	const body = (await res.json()) as { items: { name: string; policy: string; policy_role: string | null }[] };
	return Object.fromEntries(body.items.map((i) => [i.name, { policy: i.policy, policy_role: i.policy_role }]));
}

beforeAll(async () => {
	pg = await freshPostgres('flotilla_role_update_policy');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	for (const name of ['web', 'db']) {
		await createRole(systemActor, createRoleSchema.parse({ name, path: `/opt/${name}`, units: [`${name}.service`] }));
	}
	const credentialId = randomUUID();
	await db().insert(credentials).values({
		id: credentialId,
		name: 'unused',
		keyType: 'ssh-ed25519',
		publicKey: 'ssh-ed25519 AAAA unused',
		fingerprint: 'SHA256:unused',
		sealedPrivateKey: 'unused'
	});
	// No node is contacted: the addresses are never dialled.
	await db()
		.insert(nodes)
		.values([
			{ name: 'rp-web', host: '127.0.1.5', credentialId, roles: ['web'] },
			{ name: 'rp-both', host: '127.0.1.6', credentialId, roles: ['web', 'db'] },
			{ name: 'rp-own', host: '127.0.1.7', credentialId, roles: ['db'], policy: 'full' },
			{ name: 'rp-none', host: '127.0.1.8', credentialId, roles: [] }
		]);
});

afterAll(async () => {
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
});

describe('role default policy', () => {
	it('an invalid default is a 400 naming update_policy, and changes nothing', async () => {
		for (const bad of ['sometimes', 3, 'FULL']) {
			const res = await patch('web', { update_policy: bad });
			expect(res.status).toBe(400);
			expect(Object.keys((await res.json()).error.fields)).toEqual(['update_policy']);
		}
		const [web] = await db().select().from(codeRoles).where(eq(codeRoles.name, 'web'));
		expect(web!.updatePolicy).toBeNull();
		expect(await db().select().from(auditLog).where(eq(auditLog.action, 'role.update'))).toEqual([]);
		expect(await listed()).toEqual({
			'rp-both': { policy: 'security', policy_role: null },
			'rp-none': { policy: 'security', policy_role: null },
			'rp-own': { policy: 'full', policy_role: null },
			'rp-web': { policy: 'security', policy_role: null }
		});
	});

	it("nodes without their own policy take their roles' default, the most conservative winning; their own wins", async () => {
		const web = await patch('web', { update_policy: 'full' });
		expect(web.status).toBe(200);
		expect((await web.json()).update_policy).toBe('full');
		expect((await patch('db', { update_policy: 'manual' })).status).toBe(200);
		expect(await listed()).toEqual({
			'rp-both': { policy: 'manual', policy_role: 'db' },
			'rp-none': { policy: 'security', policy_role: null },
			'rp-own': { policy: 'full', policy_role: null },
			'rp-web': { policy: 'full', policy_role: 'web' }
		});
		// Cleared: the role's nodes are back to the fallback (or the other role's default).
		expect((await patch('db', { update_policy: null })).status).toBe(200);
		expect((await listed())['rp-both']).toEqual({ policy: 'full', policy_role: 'web' });
		const audit = await db().select().from(auditLog).where(eq(auditLog.action, 'role.update'));
		expect(audit.map((a) => [a.targetId, (a.details as { update_policy: string | null }).update_policy])).toEqual([
			['web', 'full'],
			['db', 'manual'],
			['db', null]
		]);
	});
});
