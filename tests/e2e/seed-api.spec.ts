import { execFile } from 'node:child_process';
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from './support/test';
import { ed25519Signature, hmacSignature } from '../../src/lib/server/releases/signing.ts';
import { bearer, call, cookie, loadTokens, signInAs } from './support/console';

/**
 * The API as release scripts written for other control planes call it (docs/releases.md, docs/appliances.md,
 * docs/api.md): an admin's token in `x-cp-admin-token`, one status answer to poll, the fleet-update body and the
 * batch rollout body.
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

// ---------------------------------------------------------------------------------------------------------------
// The fleet-update body and the batch rollout body, sent as their scripts write them (docs/appliances.md,
// "Fleet updates"; docs/releases.md, "Batch rollouts"). Their nodes are on addresses where nothing listens, so
// the stages that start fail at the connection: what matters here is what the console made of each body.

const run = promisify(execFile);
// The test key tests/e2e/appliances.spec.ts signs with: playwright.config.ts gives the console its public half.
const releaseKey = createPrivateKey(
	'-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFetvUvu8Li70D+2aWJfU81sOEe4eosNSX1sdeMkWrDA\n-----END PRIVATE KEY-----\n'
);
const made = { nodes: [] as string[], rollouts: [] as string[], credential: '', role: '' };

async function credential(): Promise<string> {
	if (made.credential) return made.credential;
	const dir = await mkdtemp(join(tmpdir(), 'flotilla-seed-'));
	await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
	const res = await call('/api/credentials', {
		method: 'POST',
		headers: bearer(tokens.admin),
		json: { name: `seed-api-${Date.now()}`, private_key: await readFile(join(dir, 'key'), 'utf8') }
	});
	await rm(dir, { recursive: true, force: true });
	expect(res.status).toBe(201);
	made.credential = (await res.json()).id;
	return made.credential;
}

/** Nodes nobody answers for (127.0.1.100–109 are this spec's), with pinned keys so that rollouts take them. */
async function addNodes(prefix: string, count: number, extra: Record<string, unknown>): Promise<string[]> {
	const ids: string[] = [];
	for (let i = 0; i < count; i++) {
		const res = await call('/api/nodes', {
			method: 'POST',
			headers: bearer(tokens.admin),
			json: {
				name: `${prefix}-${i}`,
				host: `127.0.1.${100 + (made.nodes.length % 10)}`,
				credential_id: await credential(),
				host_key_fingerprint: `SHA256:${'S'.repeat(42)}${i}`,
				...extra
			}
		});
		expect(res.status).toBe(201);
		const id = (await res.json()).id;
		made.nodes.push(id);
		ids.push(id);
	}
	return ids;
}

test.afterAll(async () => {
	if (!tokens) return;
	const auth = bearer(tokens.admin);
	for (const id of made.rollouts) await call(`/api/rollouts/${id}/cancel`, { method: 'POST', headers: auth });
	for (const id of made.nodes) await call(`/api/nodes/${id}`, { method: 'DELETE', headers: auth });
	if (made.role) await call(`/api/roles/${made.role}`, { method: 'DELETE', headers: auth });
	if (made.credential) await call(`/api/credentials/${made.credential}`, { method: 'DELETE', headers: auth });
});

/** A signed release of `version` on `channel` carrying `image`, uploaded whole. */
async function uploadImageRelease(image: Buffer<ArrayBuffer>, version: string, channel: 'stable' | 'beta') {
	const auth = bearer(tokens.admin);
	const sha256 = createHash('sha256').update(image).digest('hex');
	const manifest: Record<string, unknown> = {
		version,
		sha: sha256,
		channel,
		migrations_required: false,
		breaking_changes: null,
		released_at: '2026-06-01T00:00:00Z'
	};
	const rel = await call('/api/releases', {
		method: 'POST',
		headers: auth,
		json: { ...manifest, signature: ed25519Signature(manifest, releaseKey) }
	});
	expect(rel.status).toBe(201);
	const releaseId = (await rel.json()).id as string;
	const declared = await call('/api/appliances/images', {
		method: 'POST',
		headers: auth,
		json: {
			release_id: releaseId,
			sha256,
			size: image.length,
			signature: sign(null, Buffer.from(sha256), releaseKey).toString('hex')
		}
	});
	expect(declared.status).toBe(201);
	const imageId = (await declared.json()).id as string;
	const sent = await call(`/api/appliances/images/${imageId}/content`, {
		method: 'PUT',
		headers: { ...auth, 'content-type': 'application/octet-stream', 'upload-offset': '0' },
		body: image
	});
	expect(sent.status).toBe(200);
	return { releaseId, imageId, sha256 };
}

test('the fleet-update body rolls out an uploaded image in its stages and sets the appliances’ window', async () => {
	const auth = bearer(tokens.admin);
	const appliances = await addNodes('seed-appliance', 2, { kind: 'appliance' });
	const image = randomBytes(64 << 10);
	const sha256 = createHash('sha256').update(image).digest('hex');
	// The body as the fleet-update script writes it; only the sha256 is this image's.
	const body = {
		version: 'v44',
		iso_url: 'https://updates.osiriscare.net/v44.iso',
		sha256,
		rollout: {
			strategy: 'staged',
			stages: [
				{ percent: 5, delay_hours: 24 },
				{ percent: 25, delay_hours: 24 },
				{ percent: 100, delay_hours: 0 }
			]
		},
		maintenance_window: {
			start: '02:00',
			end: '05:00',
			timezone: 'America/New_York'
		}
	};
	const send = (json: unknown, headers: Record<string, string> = auth) =>
		call('/api/fleet/updates', { method: 'POST', headers, json });

	// Written with the placeholder the example shows, the sha256 is refused by name.
	const placeholder = await send({ ...body, sha256: 'abc123...' });
	expect(placeholder.status).toBe(400);
	expect(Object.keys((await placeholder.json()).error.fields)).toEqual(['sha256']);
	// Before the image is uploaded the console cannot take it from the URL, and says so in `iso_url`.
	const notYet = await send(body);
	expect(notYet.status).toBe(400);
	const refusal = (await notYet.json()).error;
	expect(refusal.fields.iso_url).toMatch(
		/carries no signature, so the image is not fetched from here: declare it with its signature first/
	);
	// An operator's token may not set windows.
	expect((await send(body, bearer(tokens.operate))).status).toBe(403);

	const { releaseId, imageId } = await uploadImageRelease(image, '44.0.0', 'stable');

	// Another version than the image's release, by name.
	const otherVersion = await send({ ...body, version: 'v45' });
	expect(otherVersion.status).toBe(400);
	expect((await otherVersion.json()).error.fields.version).toMatch(/is release 44\.0\.0, not 45\.0\.0/);

	const res = await send(body);
	expect(res.status).toBe(201);
	const answer = await res.json();
	made.rollouts.push(answer.rollout.id);
	expect(answer.release).toMatchObject({ id: releaseId, version: '44.0.0' });
	expect(answer.image).toMatchObject({ id: imageId, sha256, state: 'complete' });
	// The rollout the native endpoints make: the image release's stages, each delay the wait after its stage.
	expect(answer.rollout).toMatchObject({ release_id: releaseId, strategy: 'staged' });
	const detail = await (await call(`/api/rollouts/${answer.rollout.id}`, { headers: auth })).json();
	expect(detail.stages.map((s: { percent: number }) => s.percent)).toEqual([5, 25, 100]);
	expect(answer.rollout.preview.stages.map((s: { bake_seconds: number }) => s.bake_seconds)).toEqual([
		86_400, 86_400, 0
	]);
	const targeted = answer.rollout.preview.stages.flatMap((s: { nodes: { id: string }[] }) => s.nodes.map((n) => n.id));
	for (const id of appliances) expect(targeted).toContain(id);
	// System Updates' windows, one per appliance the rollout targets, every day.
	expect(answer.maintenance_windows.map((w: { target: string }) => w.target).sort()).toEqual([...targeted].sort());
	const windows = (await (await call('/api/updates/system/windows', { headers: auth })).json()).items as {
		scope: string;
		target: string;
		start: string;
		end: string;
		time_zone: string;
		days: string[];
	}[];
	for (const id of appliances) {
		expect(windows.find((w) => w.scope === 'node' && w.target === id)).toMatchObject({
			start: '02:00',
			end: '05:00',
			time_zone: 'America/New_York',
			days: ['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday']
		});
	}
	// The canary stage's appliance cannot be reached: the rollout pauses; acknowledged (resume), the stage is done and
	// the next one waits out the canary's 24 hours, until an operator advances it.
	const rolloutNow = async () => (await call(`/api/rollouts/${answer.rollout.id}`, { headers: auth })).json();
	await expect.poll(async () => (await rolloutNow()).state, { timeout: 45_000 }).toBe('paused');
	const path = `/api/rollouts/${answer.rollout.id}`;
	expect((await call(`${path}/resume`, { method: 'POST', headers: auth })).status).toBe(200);
	await expect
		.poll(async () => (await rolloutNow()).reason ?? '', { timeout: 45_000 })
		.toMatch(/^stage 2 of 3 \(25%\) starts at \S+, after stage 1 of 3 \(5%\)'s delay/);
	const waiting = await rolloutNow();
	expect(waiting).toMatchObject({ state: 'running', current_stage: 0 });
	const starts = Date.parse(/starts at (\S+),/.exec(waiting.reason)![1]!);
	expect(starts - Date.parse(waiting.stages[0].ended_at)).toBe(86_400_000);
	const advanced = await call(`${path}/advance`, { method: 'POST', headers: auth });
	expect(advanced.status).toBe(200);
	expect(await advanced.json()).toMatchObject({ current_stage: 1 });
	// A beta release reaches appliances on the beta channel: there are none, which the answer names `rollout`.
	const beta = await uploadImageRelease(randomBytes(32 << 10), '46.0.0', 'beta');
	const noneOnBeta = await send({ ...body, version: 'v46', sha256: beta.sha256 });
	expect(noneOnBeta.status).toBe(400);
	expect((await noneOnBeta.json()).error.fields).toEqual({
		rollout: expect.stringMatching(/no node on channel beta matches/)
	});
	// The same appliances in a second fleet update while this one is active: refused, nothing written.
	const again = await send(body);
	expect(again.status).toBe(409);
	const audit = await call('/api/audit?action=appliance.fleet_update&limit=5', { headers: auth });
	const rows = (await audit.json()).items as { target_id: string }[];
	expect(rows.map((r) => r.target_id)).toEqual([answer.rollout.id]);
});

test('the batch rollout body makes batches that each wait for advance', async () => {
	const auth = { 'x-cp-admin-token': tokens.admin };
	made.role = `seed-batch-${Date.now() % 100_000}`;
	const role = await call('/api/roles', {
		method: 'POST',
		headers: bearer(tokens.admin),
		json: { name: made.role, path: '/srv/seed-batch', units: ['seed-batch.service'] }
	});
	expect(role.status).toBe(201);
	const ours = await addNodes('seed-batch', 6, { roles: [made.role] });
	const uploaded = await call('/api/releases', {
		method: 'POST',
		headers: auth,
		json: manifest(`1.5.${Date.now() % 100_000}`)
	});
	expect(uploaded.status).toBe(201);
	const manifestId = (await uploaded.json()).id;

	// Exactly the documented call, `<id>` filled in.
	const res = await call('/api/rollouts', {
		method: 'POST',
		headers: { ...auth, 'Content-Type': 'application/json' },
		body: JSON.stringify({ manifestId, channel: 'stable', batchSize: 5 })
	});
	expect(res.status).toBe(201);
	const rollout = await res.json();
	made.rollouts.push(rollout.id);
	expect(rollout).toMatchObject({ release_id: manifestId, require_approval: true });
	const batches = rollout.preview.stages.map((s: { nodes: unknown[] }) => s.nodes.length) as number[];
	const total = batches.reduce((a, b) => a + b, 0);
	expect(total).toBeGreaterThanOrEqual(ours.length);
	expect(batches.slice(0, -1).every((n) => n === 5)).toBe(true);
	expect(batches.at(-1)).toBe(total - 5 * (batches.length - 1));

	// Bad input names the batch body's own fields.
	for (const [json, field] of [
		[{ manifestId, channel: 'nightly', batchSize: 5 }, 'channel'],
		[{ manifestId, channel: 'stable', batchSize: 0 }, 'batchSize'],
		[{ manifestId: '00000000-0000-4000-8000-000000000000', channel: 'stable', batchSize: 5 }, 'manifestId']
	] as const) {
		const refused = await call('/api/rollouts', { method: 'POST', headers: auth, json });
		expect(refused.status, field).toBe(400);
		expect(Object.keys((await refused.json()).error.fields), field).toEqual([field]);
	}

	// The first batch's nodes cannot be reached: its failures pause the rollout; the operator acknowledges them
	// (resume), and the rollout waits for the next batch's advance.
	const stateOf = async () => (await (await call(`/api/rollouts/${rollout.id}`, { headers: auth })).json()).state;
	await expect.poll(stateOf, { timeout: 45_000 }).toBe('paused');
	const resumed = await call(`/api/rollouts/${rollout.id}/resume`, { method: 'POST', headers: auth });
	expect(resumed.status).toBe(200);
	await expect.poll(stateOf, { timeout: 45_000 }).toBe('waiting_approval');
	// "Advance to next batch", as written: the admin header and no body.
	const advanced = await call(`/api/rollouts/${rollout.id}/advance`, { method: 'POST', headers: auth });
	expect(advanced.status).toBe(200);
	expect(await advanced.json()).toMatchObject({ id: rollout.id, current_stage: 1 });
});
