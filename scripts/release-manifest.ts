/**
 * `npm run release:manifest -- --version 1.4.0 --sha 0f00ba5 --channel stable [--migrations-required true]
 * [--breaking-changes "…"] [--released-at ISO] [--key ed25519-private.pem] --out release-manifest.json`
 *
 * Writes a signed release manifest (docs/releases.md): with `--key`, an Ed25519 signature by that private key
 * (PEM); otherwise an HMAC-SHA256 under RELEASE_SIGNING_SECRET. The secret is read from the environment only.
 */
import { createPrivateKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ed25519Signature, hmacSignature } from '../src/lib/server/releases/signing.ts';

const { values } = parseArgs({
	options: {
		version: { type: 'string' },
		sha: { type: 'string' },
		channel: { type: 'string', default: 'stable' },
		'migrations-required': { type: 'string', default: 'false' },
		'breaking-changes': { type: 'string' },
		'released-at': { type: 'string' },
		key: { type: 'string' },
		out: { type: 'string' }
	}
});

function fail(message: string): never {
	console.error(`release:manifest: ${message}`);
	process.exit(2);
}

if (!values.version) fail('--version is required');
if (!values.sha) fail('--sha is required');
if (!['stable', 'beta'].includes(values.channel!)) fail('--channel must be stable or beta');
if (!['true', 'false'].includes(values['migrations-required']!)) fail('--migrations-required must be true or false');

const manifest: Record<string, unknown> = {
	version: values.version,
	sha: values.sha.toLowerCase(),
	channel: values.channel,
	migrations_required: values['migrations-required'] === 'true',
	breaking_changes: values['breaking-changes'] ?? null,
	released_at: values['released-at'] ?? new Date().toISOString()
};

if (values.key) {
	manifest.signature = ed25519Signature(manifest, createPrivateKey(readFileSync(values.key)));
} else {
	const secret = process.env.RELEASE_SIGNING_SECRET;
	if (!secret) fail('give --key <Ed25519 private key PEM> or set RELEASE_SIGNING_SECRET');
	manifest.signature = hmacSignature(manifest, secret);
}

const text = `${JSON.stringify(manifest, null, '\t')}\n`;
if (values.out) writeFileSync(values.out, text);
else process.stdout.write(text);
