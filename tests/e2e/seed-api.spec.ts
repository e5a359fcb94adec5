import { expect, test } from '@playwright/test';
import { hmacSignature } from '../../src/lib/server/releases/signing.ts';
import { call, cookie, loadTokens, signInAs } from './support/console';

/**
 * The API as release scripts written for other control planes call it (docs/releases.md, docs/api.md): an
 * admin's token in `x-cp-admin-token`, and one status answer to poll.
 */

const SECRET = 'e2e-release-signing-secret-0123';
let tokens: ReturnType<typeof loadTokens>;

test.beforeAll(() => {
	tokens = loadTokens();
});

/** A manifest as `npm run release:manifest -- --version 1.4.0 --sha 0f00ba5 …` writes it. */
function manifest(version: string) {
	const m = {
		version,
		sha: '0f00ba5',
		channel: 'stable',
		migrations_required: true,
		breaking_changes: 'Drops legacy orders API',
		released_at: '2026-05-01T12:00:00Z'
	};
	return { ...m, signature: hmacSignature(m, SECRET) };
}

test('an admin token in x-cp-admin-token uploads a release; any other token there is refused', async () => {
	const version = `1.4.${Date.now() % 100_000}`;
	const asSeed = (token: string) => ({ 'x-cp-admin-token': token });
	for (const scope of ['read', 'operate'] as const) {
		const refused = await call('/api/releases', {
			method: 'POST',
			headers: asSeed(tokens[scope]),
			json: manifest(version)
		});
		expect(refused.status, `a ${scope} token in the admin header`).toBe(401);
		expect((await refused.json()).error.code).toBe('unauthenticated');
	}
	const created = await call('/api/releases', {
		method: 'POST',
		headers: asSeed(tokens.admin),
		json: manifest(version)
	});
	expect(created.status).toBe(201);
	const release = await created.json();
	expect(release).toMatchObject({ version, sha: '0f00ba5', verified_by: 'hmac-sha256:shared-secret' });
	// Read back with the same header (rollouts are under the same rule), and audited as the token's owner.
	const listed = await call(`/api/releases/${release.id}`, { headers: asSeed(tokens.admin) });
	expect(listed.status).toBe(200);
	const rollouts = await call('/api/rollouts?limit=1', { headers: asSeed(tokens.admin) });
	expect(rollouts.status).toBe(200);
	const admin = await signInAs('admin');
	const audit = await call(`/api/audit?action=release.create&limit=5`, { headers: cookie(admin) });
	const rows = (await audit.json()).items as { target_id: string; via: string; result: string }[];
	expect(rows.find((r) => r.target_id === release.id)).toMatchObject({
		via: expect.stringMatching(/^token:/),
		result: 'ok'
	});

	// Elsewhere the header means nothing: the request has no credential at all.
	const elsewhere = await call('/api/nodes', { headers: asSeed(tokens.admin) });
	expect(elsewhere.status).toBe(401);
	// A bearer token wins over the header when both come.
	const both = await call('/api/releases?limit=1', {
		headers: { authorization: `Bearer ${tokens.read}`, 'x-cp-admin-token': 'flt_not-a-token' }
	});
	expect(both.status).toBe(200);
});
