import { createHash } from 'node:crypto';

/**
 * A host key's fingerprint exactly as OpenSSH prints it (`ssh-keygen -lf`, `ssh -v`): `SHA256:` and the
 * unpadded base64 of the SHA-256 of the key blob. Operators compare it with what their own tools show.
 */
export function fingerprintOf(keyBlob: Buffer): string {
	return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

export const fingerprintPattern = /^SHA256:[A-Za-z0-9+/]{43}$/;

export type HostKeyStatus = 'pinned' | 'unknown' | 'changed';

/** Compares what a node presented with what the console pinned. Only `pinned` may proceed. */
export function hostKeyStatus(pinned: string | null, presented: string): HostKeyStatus {
	if (!pinned) return 'unknown';
	return pinned === presented ? 'pinned' : 'changed';
}
