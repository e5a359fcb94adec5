import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The master key that encrypts secrets at rest (SSH private keys). From FLOTILLA_SECRET_KEY when set
 * (32 bytes as base64 or hex, the same on every console sharing a database); otherwise generated once
 * into `<data dir>/secret.key` with mode 600, which suits the single-process embedded default.
 */
export function loadSecretKey(opts: { envKey: string | undefined; dataDir: string }): Buffer {
	if (opts.envKey) return parseKey(opts.envKey, 'FLOTILLA_SECRET_KEY');
	const file = path.join(opts.dataDir, 'secret.key');
	try {
		const mode = statSync(file).mode & 0o777;
		if (mode & 0o077) {
			throw new Error(`${file} is readable by other users (mode ${mode.toString(8)}): run chmod 600 ${file}`);
		}
		return parseKey(readFileSync(file, 'utf8').trim(), file);
	} catch (err) {
		if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
	}
	mkdirSync(opts.dataDir, { recursive: true });
	const key = randomBytes(32);
	// 'wx' fails if another process created the file in the meantime, instead of overwriting its key.
	writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
	return key;
}

function parseKey(text: string, source: string): Buffer {
	const key = /^[0-9a-f]{64}$/i.test(text) ? Buffer.from(text, 'hex') : Buffer.from(text, 'base64');
	if (key.length !== 32 || (!/^[0-9a-f]{64}$/i.test(text) && key.toString('base64') !== text)) {
		throw new Error(
			`${source} must be 32 bytes as base64 (44 characters) or hex (64 characters); try: openssl rand -base64 32`
		);
	}
	return key;
}
