import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { auditLog } from '../../src/lib/server/db/schema';
import { ServiceError } from '../../src/lib/server/errors';
import { canonicalManifest } from '../../src/lib/server/releases/canonical';
import { useMinimumVersion, useReleaseKeys } from '../../src/lib/server/releases/keys';
import { createRelease, getRelease, listReleases } from '../../src/lib/server/releases/releases';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { POST as postRelease } from '../../src/routes/api/releases/+server';
import { backends } from '../support/databases';
import { callRoute, errorOf } from '../support/route-call';

/**
 * Release manifests (docs/releases.md): signatures made with the `openssl` CLI, not with the code under test,
 * so the canonical form and both algorithms are checked against an independent implementation.
 */

const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-release-'));
const SECRET = 'a-shared-release-secret-0123456789';
const openssl = (...args: string[]) => execFileSync('openssl', args);

function keyPair(name: string) {
	const priv = path.join(dir, `${name}.pem`);
	const pub = path.join(dir, `${name}.pub.pem`);
	openssl('genpkey', '-algorithm', 'ed25519', '-out', priv);
	openssl('pkey', '-in', priv, '-pubout', '-out', pub);
	return { priv, pub: readFileSync(pub, 'utf8') };
}
const signer = keyPair('signer');
const stranger = keyPair('stranger');
const signerKey = createPublicKey(signer.pub);

function base(version = '1.4.0'): Record<string, unknown> {
	return {
		version,
		sha: '0f00ba5e0f00ba5e0f00ba5e0f00ba5e0f00ba5e',
		channel: 'stable',
		migrations_required: true,
		breaking_changes: 'Drops the legacy orders API',
		released_at: '2026-05-01T12:00:00Z'
	};
}

/** The canonical bytes written out exactly as docs/releases.md defines them, independently of canonicalManifest. */
function documentedCanonical(m: Record<string, unknown>): string {
	const keys = Object.keys(m)
		.filter((k) => k !== 'signature')
		.sort();
	return `{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(m[k])}`).join(',')}}`;
}

function hmacWithOpenssl(m: Record<string, unknown>, secret = SECRET): string {
	const file = path.join(dir, 'msg-hmac');
	writeFileSync(file, documentedCanonical(m));
	const out = openssl('dgst', '-sha256', '-hmac', secret, '-r', file).toString();
	return out.split(' ')[0]!.trim();
}

function ed25519WithOpenssl(m: Record<string, unknown>, priv = signer.priv): string {
	const file = path.join(dir, 'msg-ed');
	const sig = path.join(dir, 'sig');
	writeFileSync(file, documentedCanonical(m));
	openssl('pkeyutl', '-sign', '-inkey', priv, '-rawin', '-in', file, '-out', sig);
	return readFileSync(sig).toString('hex');
}

async function refusal(body: unknown): Promise<ServiceError> {
	const err = await createRelease(systemActor, body).catch((e: unknown) => e);
	expect(err).toBeInstanceOf(ServiceError);
	expect((err as ServiceError).status).toBe(400);
	return err as ServiceError;
}

describe.each(backends)('release manifests on $name', ({ open }) => {
	let handle: DatabaseHandle;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useReleaseKeys({ ed25519: [{ id: keyIdOf(signerKey), key: signerKey }], hmacSecret: SECRET });
	});
	afterAll(async () => {
		useReleaseKeys(undefined);
		useDatabase(undefined);
		await handle.close();
	});

	it('the canonical form is the documented one: sorted keys, no whitespace, no signature', () => {
		const m = { ...base(), signature: 'ff' };
		expect(canonicalManifest(m)).toBe(documentedCanonical(m));
		expect(canonicalManifest(m)).toBe(
			'{"breaking_changes":"Drops the legacy orders API","channel":"stable","migrations_required":true,"released_at":"2026-05-01T12:00:00Z","sha":"0f00ba5e0f00ba5e0f00ba5e0f00ba5e0f00ba5e","version":"1.4.0"}'
		);
	});

	it('accepts an HMAC-SHA256 manifest signed by openssl and records the shared secret as its key', async () => {
		const m = base('1.4.0');
		m.signature = hmacWithOpenssl(m);
		const r = await createRelease(systemActor, m);
		expect(r).toMatchObject({ version: '1.4.0', algorithm: 'hmac-sha256', verifiedBy: 'hmac-sha256:shared-secret' });
		expect((await getRelease(r.id)).manifest).toEqual(m);
	});

	it('accepts an Ed25519 manifest signed by openssl and records which key verified it', async () => {
		const m: Record<string, unknown> = {
			...base('1.5.0-beta.1'),
			channel: 'beta',
			breaking_changes: null,
			migrations_required: false
		};
		m.signature = ed25519WithOpenssl(m);
		const r = await createRelease(systemActor, m);
		expect(r.algorithm).toBe('ed25519');
		expect(r.verifiedBy).toBe(keyIdOf(signerKey));
		expect(r.verifiedBy).toMatch(/^ed25519:[0-9a-f]{16}$/);
		expect((await listReleases({ limit: 10 })).map((x) => x.version)).toEqual(['1.5.0-beta.1', '1.4.0']);
	});

	it('a field changed after signing is refused, for both algorithms, saying so', async () => {
		const h = base('2.0.0');
		h.signature = hmacWithOpenssl(h);
		const e1 = await refusal({ ...h, sha: 'deadbeefdeadbeef' });
		expect(e1.fields.signature).toMatch(/does not match this manifest under the shared secret/);
		const e = base('2.0.1');
		e.signature = ed25519WithOpenssl(e);
		const e2 = await refusal({ ...e, migrations_required: false });
		expect(e2.fields.signature).toMatch(/verifies under none of the 1 release key/);
		expect(e2.message).toMatch(/^Signature refused/);
		const [audited] = await db().select().from(auditLog).where(eq(auditLog.targetId, '2.0.1'));
		expect(audited?.result).toBe('denied');
	});

	it('a signature by another key or another secret is refused', async () => {
		const m = base('2.1.0');
		m.signature = ed25519WithOpenssl(m, stranger.priv);
		expect((await refusal(m)).fields.signature).toMatch(/verifies under none/);
		const n = base('2.1.1');
		n.signature = hmacWithOpenssl(n, 'some-other-secret-0123456789');
		expect((await refusal(n)).fields.signature).toMatch(/does not match/);
	});

	it('without configured keys the reason names the missing configuration', async () => {
		useReleaseKeys({ ed25519: [] });
		try {
			const m = base('2.2.0');
			m.signature = ed25519WithOpenssl(m);
			expect((await refusal(m)).fields.signature).toMatch(/no release public key \(FLOTILLA_RELEASE_PUBLIC_KEYS\)/);
			const n = base('2.2.1');
			n.signature = hmacWithOpenssl(n);
			expect((await refusal(n)).fields.signature).toMatch(/FLOTILLA_RELEASE_SIGNING_SECRET/);
		} finally {
			useReleaseKeys({ ed25519: [{ id: keyIdOf(signerKey), key: signerKey }], hmacSecret: SECRET });
		}
	});

	it('a missing signature, missing fields, a non-semver version, extra fields: 400 naming each', async () => {
		expect((await refusal(base('3.0.0'))).fields.signature).toMatch(/is required/);
		const { sha: _s, released_at: _r, ...partial } = base('3.0.1');
		const missing = await refusal({ ...partial, signature: hmacWithOpenssl(partial) });
		expect(missing.fields).toMatchObject({ sha: expect.stringMatching(/required/), released_at: expect.any(String) });
		const v = { ...base('1.4'), signature: 'a'.repeat(64) };
		expect((await refusal(v)).fields.version).toMatch(/semantic version/);
		const x = { ...base('3.0.2'), extra: 1, signature: 'a'.repeat(64) };
		expect((await refusal(x)).fields._).toMatch(/extra/);
		expect((await refusal({ ...base('3.0.3'), signature: 'xyz' })).fields.signature).toMatch(/hexadecimal/);
		expect((await refusal([1, 2])).message).toBeTruthy();
	});

	it('the same version twice is a conflict', async () => {
		const m = base('1.4.0');
		m.signature = hmacWithOpenssl(m);
		const err = await createRelease(systemActor, m).catch((e: unknown) => e);
		expect((err as ServiceError).status).toBe(409);
	});

	it('POST /api/releases refuses a version below the minimum (400 naming version), stores and audits it so', async () => {
		useMinimumVersion('1.4.0');
		try {
			const signed = (version: string) => {
				const m = base(version);
				return { ...m, signature: hmacWithOpenssl(m) };
			};
			// Below by semantic-version precedence: an older release, and a prerelease of the floor itself.
			for (const version of ['1.3.9', '1.4.0-rc.1']) {
				const res = await callRoute(postRelease, '/api/releases', { json: signed(version) });
				expect(res.status).toBe(400);
				const error = await errorOf(res);
				expect(error.code).toBe('validation_failed');
				expect(error.fields.version).toBe(
					`${version} is below the minimum version 1.4.0 configured by FLOTILLA_RELEASE_MIN_VERSION`
				);
				expect(error.message).toMatch(/\(rollback protection\)$/);
				const denied = await db().select().from(auditLog).where(eq(auditLog.targetId, version));
				expect(denied.map((a) => [a.action, a.result])).toEqual([['release.create', 'denied']]);
			}
			const stored = (await listReleases({ limit: 100 })).map((r) => r.version);
			expect(stored).not.toContain('1.3.9');
			expect(stored).not.toContain('1.4.0-rc.1');
			// At or above the floor: registered.
			const ok = await callRoute(postRelease, '/api/releases', { json: signed('1.6.0') });
			expect(ok.status).toBe(201);
			expect(await ok.json()).toMatchObject({ version: '1.6.0', verified_by: 'hmac-sha256:shared-secret' });
		} finally {
			useMinimumVersion(undefined);
		}
	});
});

describe('npm run release:manifest', () => {
	it('signs with RELEASE_SIGNING_SECRET and with an Ed25519 key, verifiable by openssl', () => {
		const out = path.join(dir, 'hmac.json');
		execFileSync(
			process.execPath,
			[
				'scripts/release-manifest.ts',
				'--version',
				'1.4.0',
				'--sha',
				'0F00BA5',
				'--channel',
				'stable',
				'--migrations-required',
				'true',
				'--breaking-changes',
				'Drops legacy orders API',
				'--out',
				out
			],
			{ env: { ...process.env, RELEASE_SIGNING_SECRET: SECRET } }
		);
		const h = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown>;
		expect(h).toMatchObject({ sha: '0f00ba5', migrations_required: true, breaking_changes: 'Drops legacy orders API' });
		expect(h.signature).toBe(hmacWithOpenssl(h));

		const out2 = path.join(dir, 'ed.json');
		execFileSync(process.execPath, [
			'scripts/release-manifest.ts',
			'--version',
			'1.4.1',
			'--sha',
			'0f00ba5',
			'--key',
			signer.priv,
			'--out',
			out2
		]);
		const e = JSON.parse(readFileSync(out2, 'utf8')) as Record<string, unknown>;
		const msg = path.join(dir, 'verify-msg');
		const sig = path.join(dir, 'verify-sig');
		const pub = path.join(dir, 'signer.pub.pem');
		writeFileSync(msg, documentedCanonical(e));
		writeFileSync(sig, Buffer.from(String(e.signature), 'hex'));
		const verified = openssl('pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', msg, '-sigfile', sig);
		expect(verified.toString()).toMatch(/Signature Verified Successfully/);
	});
});
