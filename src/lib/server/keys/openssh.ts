import { generateKeyPairSync, randomBytes } from 'node:crypto';

/*
 * A new ed25519 key pair made in the console, in OpenSSH's own private-key format (PROTOCOL.key in OpenSSH's
 * sources), so that ssh2 and the openssh client read it alike and no ssh-keygen is needed on the console.
 */

function sshString(data: Buffer | string): Buffer {
	const body = typeof data === 'string' ? Buffer.from(data) : data;
	const len = Buffer.alloc(4);
	len.writeUInt32BE(body.length);
	return Buffer.concat([len, body]);
}

function uint32(n: number): Buffer {
	const b = Buffer.alloc(4);
	b.writeUInt32BE(n);
	return b;
}

export interface GeneratedKey {
	/** `-----BEGIN OPENSSH PRIVATE KEY-----` … without a passphrase (it is sealed at rest instead). */
	privateKey: string;
	/** `ssh-ed25519 <base64>` without a comment. */
	publicKey: string;
}

export function generateEd25519(comment: string): GeneratedKey {
	const { publicKey, privateKey } = generateKeyPairSync('ed25519');
	// The raw 32-byte keys are the last bytes of their DER (SPKI and PKCS#8) encodings.
	const pub = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
	const seed = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
	const pubBlob = Buffer.concat([sshString('ssh-ed25519'), sshString(pub)]);
	const check = randomBytes(4);
	let priv = Buffer.concat([
		check,
		check,
		sshString('ssh-ed25519'),
		sshString(pub),
		sshString(Buffer.concat([seed, pub])),
		sshString(comment)
	]);
	const pad = (8 - (priv.length % 8)) % 8;
	priv = Buffer.concat([priv, Buffer.from(Array.from({ length: pad }, (_, i) => i + 1))]);
	const body = Buffer.concat([
		Buffer.from('openssh-key-v1\0'),
		sshString('none'),
		sshString('none'),
		sshString(''),
		uint32(1),
		sshString(pubBlob),
		sshString(priv)
	]);
	const lines = body.toString('base64').match(/.{1,70}/g)!;
	return {
		privateKey: ['-----BEGIN OPENSSH PRIVATE KEY-----', ...lines, '-----END OPENSSH PRIVATE KEY-----', ''].join('\n'),
		publicKey: `ssh-ed25519 ${pubBlob.toString('base64')}`
	};
}
