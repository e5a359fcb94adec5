import { sha256 } from '@oslojs/crypto/sha2';
import { encodeBase32LowerCaseNoPadding, encodeHexLowerCase } from '@oslojs/encoding';

/** 20 random bytes (160 bits) as lower-case base32: unguessable and safe in cookies and headers. */
export function generateSecret(): string {
	const bytes = new Uint8Array(20);
	crypto.getRandomValues(bytes);
	return encodeBase32LowerCaseNoPadding(bytes);
}

/**
 * What the database stores in place of a session or API token. A plain SHA-256 is enough here:
 * the token has 160 bits of entropy, so there is nothing to brute-force, and lookups stay one index hit.
 */
export function hashToken(token: string): string {
	return encodeHexLowerCase(sha256(new TextEncoder().encode(token)));
}
