import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

/**
 * AES-256-GCM for secrets at rest. The sealed form is `v1.<iv>.<tag>.<ciphertext>` (base64url), so the
 * format can change later without guessing. `context` (for example `credential:<id>`) is authenticated
 * but not stored: a sealed value copied onto another row does not open there.
 */
const VERSION = 'v1';
const TAG_BYTES = 16;

export function sealSecret(key: Buffer, plaintext: string, context = ''): string {
	const iv = randomBytes(12);
	const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
	cipher.setAAD(Buffer.from(context));
	const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
	return [VERSION, iv, cipher.getAuthTag(), ciphertext]
		.map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
		.join('.');
}

export function openSecret(key: Buffer, sealed: string, context = ''): string {
	const [version, iv, tag, ciphertext] = sealed.split('.');
	if (version !== VERSION || !iv || !tag || ciphertext === undefined) throw new Error('Not a sealed secret');
	const authTag = Buffer.from(tag, 'base64url');
	// A shortened tag would make forgery cheaper: accept only the full 16 bytes.
	if (authTag.length !== TAG_BYTES) throw new Error('Not a sealed secret');
	const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
	decipher.setAAD(Buffer.from(context));
	decipher.setAuthTag(authTag);
	return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
}
