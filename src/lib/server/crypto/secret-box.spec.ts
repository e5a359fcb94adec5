import { chmodSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSecret, sealSecret } from './secret-box';
import { loadSecretKey } from './secret-key';

const tempDir = () => mkdtempSync(path.join(tmpdir(), 'flotilla-key-'));

describe('the master key', () => {
	it('is generated once into the data folder with mode 600, then reused', () => {
		const dir = tempDir();
		const first = loadSecretKey({ envKey: undefined, dataDir: dir });
		expect(first).toHaveLength(32);
		expect(statSync(path.join(dir, 'secret.key')).mode & 0o777).toBe(0o600);
		expect(loadSecretKey({ envKey: undefined, dataDir: dir }).equals(first)).toBe(true);
	});

	it('refuses a key file other users can read', () => {
		const dir = tempDir();
		loadSecretKey({ envKey: undefined, dataDir: dir });
		chmodSync(path.join(dir, 'secret.key'), 0o644);
		expect(() => loadSecretKey({ envKey: undefined, dataDir: dir })).toThrow(/chmod 600/);
	});

	it('comes from FLOTILLA_SECRET_KEY as base64 or hex, and a malformed one fails loudly', () => {
		const hex = 'ab'.repeat(32);
		expect(loadSecretKey({ envKey: hex, dataDir: tempDir() }).toString('hex')).toBe(hex);
		const b64 = Buffer.alloc(32, 7).toString('base64');
		expect(loadSecretKey({ envKey: b64, dataDir: tempDir() }).equals(Buffer.alloc(32, 7))).toBe(true);
		expect(() => loadSecretKey({ envKey: 'too-short', dataDir: tempDir() })).toThrow(
			/FLOTILLA_SECRET_KEY must be 32 bytes/
		);
		const dir = tempDir();
		writeFileSync(path.join(dir, 'secret.key'), 'garbage', { mode: 0o600 });
		expect(() => loadSecretKey({ envKey: undefined, dataDir: dir })).toThrow(/secret.key must be 32 bytes/);
	});
});

describe('sealed secrets', () => {
	const key = Buffer.alloc(32, 1);
	const secret = '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n';

	it('round-trip, and never contain the plaintext', () => {
		const sealed = sealSecret(key, secret, 'credential:1');
		expect(sealed).toMatch(/^v1\./);
		expect(sealed).not.toContain('OPENSSH');
		expect(openSecret(key, sealed, 'credential:1')).toBe(secret);
		expect(sealSecret(key, secret, 'credential:1')).not.toBe(sealed);
	});

	it('do not open with another key, another context, or after tampering', () => {
		const sealed = sealSecret(key, secret, 'credential:1');
		expect(() => openSecret(Buffer.alloc(32, 2), sealed, 'credential:1')).toThrow();
		expect(() => openSecret(key, sealed, 'credential:2')).toThrow();
		const parts = sealed.split('.');
		const tampered = [...parts];
		tampered[3] = Buffer.from('tampered').toString('base64url');
		expect(() => openSecret(key, tampered.join('.'), 'credential:1')).toThrow();
		const truncatedTag = [...parts];
		truncatedTag[2] = Buffer.from(parts[2]!, 'base64url').subarray(0, 4).toString('base64url');
		expect(() => openSecret(key, truncatedTag.join('.'), 'credential:1')).toThrow('Not a sealed secret');
	});
});
