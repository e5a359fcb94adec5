import { createHash, createHmac, createPublicKey, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { canonicalManifest } from './canonical.ts';

/*
 * Release signatures (docs/releases.md, "Signing"): hex over the canonical manifest. 64 hex characters are an
 * HMAC-SHA256 under the shared secret; 128 are an Ed25519 signature by one of the release keys. Kept free of the
 * console's own modules so that `npm run release:manifest` can use it as it is.
 */

export interface ReleaseKeys {
	ed25519: { id: string; key: KeyObject }[];
	hmacSecret?: string;
}

export type Verified = { algorithm: 'ed25519' | 'hmac-sha256'; keyId: string };

/** A signature that does not verify, and why, in words an operator acts on. */
export class SignatureRefused extends Error {}

/** `ed25519:` and the first 16 hex characters of the SHA-256 of the raw public key: names a key in records. */
export function keyIdOf(key: KeyObject): string {
	const raw = key.export({ format: 'der', type: 'spki' }).subarray(-32);
	return `ed25519:${createHash('sha256').update(raw).digest('hex').slice(0, 16)}`;
}

export const HMAC_KEY_ID = 'hmac-sha256:shared-secret';

/**
 * Reads Ed25519 public keys from PEM text (any number of `PUBLIC KEY` blocks) or base64 items (the raw 32-byte
 * key or its SPKI DER), separated by commas or whitespace.
 */
export function parsePublicKeys(text: string): KeyObject[] {
	const pems = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
	const rest = text.replace(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g, ' ');
	const keys = pems.map((pem) => createPublicKey(pem));
	for (const item of rest.split(/[\s,]+/).filter(Boolean)) {
		const der = Buffer.from(item, 'base64');
		const spki = der.length === 32 ? Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), der]) : der;
		keys.push(createPublicKey({ key: spki, format: 'der', type: 'spki' }));
	}
	for (const k of keys) {
		if (k.asymmetricKeyType !== 'ed25519') throw new Error(`a release key is ${k.asymmetricKeyType}, not Ed25519`);
	}
	return keys;
}

function message(manifest: Record<string, unknown>): Buffer {
	return Buffer.from(canonicalManifest(manifest), 'utf8');
}

export function hmacSignature(manifest: Record<string, unknown>, secret: string): string {
	return createHmac('sha256', secret).update(message(manifest)).digest('hex');
}

export function ed25519Signature(manifest: Record<string, unknown>, privateKey: KeyObject): string {
	return sign(null, message(manifest), privateKey).toString('hex');
}

/** Which key verified the manifest's signature; throws SignatureRefused saying why when none did. */
export function verifyManifest(manifest: Record<string, unknown>, keys: ReleaseKeys): Verified {
	const signature = manifest.signature;
	if (typeof signature !== 'string' || !signature) throw new SignatureRefused('the manifest is not signed');
	const bytes = Buffer.from(signature, 'hex');
	if (signature.length === 64) {
		if (!keys.hmacSecret) {
			throw new SignatureRefused(
				'an HMAC-SHA256 signature, but this console has no shared signing secret (FLOTILLA_RELEASE_SIGNING_SECRET)'
			);
		}
		const expected = createHmac('sha256', keys.hmacSecret).update(message(manifest)).digest();
		if (bytes.length !== expected.length || !timingSafeEqual(bytes, expected)) {
			throw new SignatureRefused(
				'the HMAC-SHA256 signature does not match this manifest under the shared secret: a field changed after signing, or another secret signed it'
			);
		}
		return { algorithm: 'hmac-sha256', keyId: HMAC_KEY_ID };
	}
	if (signature.length === 128) {
		if (!keys.ed25519.length) {
			throw new SignatureRefused(
				'an Ed25519 signature, but this console has no release public key (FLOTILLA_RELEASE_PUBLIC_KEYS)'
			);
		}
		for (const k of keys.ed25519) {
			if (verify(null, message(manifest), k.key, bytes)) return { algorithm: 'ed25519', keyId: k.id };
		}
		throw new SignatureRefused(
			`the Ed25519 signature verifies under none of the ${keys.ed25519.length} release key(s) (${keys.ed25519.map((k) => k.id).join(', ')}): a field changed after signing, or another key signed it`
		);
	}
	throw new SignatureRefused('must be 64 hexadecimal characters (HMAC-SHA256) or 128 (Ed25519)');
}
