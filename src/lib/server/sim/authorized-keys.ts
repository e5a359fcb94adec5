import { createHash } from 'node:crypto';
// ssh2 is CommonJS: Node's ESM loader sees its default export only.
import ssh2 from 'ssh2';
import { readScript, writeScript } from '$lib/server/keys/remote';
import type { CommandIO, HostModel } from './host';

/*
 * The login user's ~/.ssh/authorized_keys on a simulated host, with sshd's meaning: the host lets in exactly the
 * keys its file lists, so a key a rotation removed stops working and the one it added works. The console reads
 * and writes the file with two shell scripts (keys/remote.ts) the simulator's command line cannot run; it
 * answers exactly those scripts, compared word for word, so a change to them fails here instead of passing.
 */

/** The simulated hosts are logged into as root. */
export const authorizedKeysPath = '/root/.ssh/authorized_keys';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

const KEY_WORD = /^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521))$/;

/** The keys sshd reads from the file: the first "<type> <base64>" pair of each line that is not a comment. */
function listedKeys(content: string): { type: string; blob: Buffer }[] {
	return content.split('\n').flatMap((line) => {
		const words = line.trim().split(/[ \t]+/);
		if (!words[0] || words[0].startsWith('#')) return [];
		const at = words.findIndex((w, i) => KEY_WORD.test(w) && /^[A-Za-z0-9+/]+={0,3}$/.test(words[i + 1] ?? ''));
		return at < 0 ? [] : [{ type: words[at]!, blob: Buffer.from(words[at + 1]!, 'base64') }];
	});
}

/** Whether the host lets this public key in (and, with a signature, whether the key signed it). */
export function letsIn(
	model: HostModel,
	key: { algo: string; data: Buffer },
	signed?: { blob: Buffer; signature: Buffer; hashAlgo: string | undefined }
): boolean {
	const listed = listedKeys(model.files.get(authorizedKeysPath) ?? '').find(
		(k) => k.type === key.algo && k.blob.equals(key.data)
	);
	if (!listed) return false;
	if (!signed) return true;
	const parsed = ssh2.utils.parseKey(`${listed.type} ${listed.blob.toString('base64')}`);
	if (parsed instanceof Error) return false;
	return parsed.verify(signed.blob, signed.signature, signed.hashAlgo as never);
}

let writePattern: RegExp | undefined;
/** The write script with its two values (the hash read before, the new content) left open. */
function writeMatch(line: string): { hash: string; base64: string } | null {
	if (!writePattern) {
		const template = writeScript('HASH', 'CONTENT').script.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
		writePattern = new RegExp(
			`^${template.replace("'HASH'", "'([0-9a-f]{64}|missing)'").replace("'CONTENT'", "'([A-Za-z0-9+/=]*)'")}$`
		);
	}
	const m = writePattern.exec(line);
	return m ? { hash: m[1]!, base64: m[2]! } : null;
}

/** Answers the console's read or write of the file; null for any other command line. */
export async function authorizedKeysCommand(model: HostModel, line: string, io: CommandIO): Promise<number | null> {
	const content = model.files.get(authorizedKeysPath);
	if (line === readScript.script) {
		if (content === undefined) await io.out('missing');
		else await io.out('file 600 root:root');
		await io.out(content === undefined ? '' : Buffer.from(content, 'utf8').toString('base64'));
		// The simulated sshd takes keys only.
		await io.out('sshd-T no');
		return 0;
	}
	const write = writeMatch(line);
	if (!write) return null;
	const now = content === undefined ? 'missing' : sha256(content);
	if (now !== write.hash) {
		await io.err('~/.ssh/authorized_keys changed while the console edited it');
		return 3;
	}
	model.files.set(authorizedKeysPath, Buffer.from(write.base64, 'base64').toString('utf8'));
	model.persist?.();
	return 0;
}
