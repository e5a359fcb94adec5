import { createHash } from 'node:crypto';

/*
 * authorized_keys edited as text, line by line (sshd(8), "AUTHORIZED_KEYS FILE FORMAT"). Every line the console
 * does not manage is kept byte for byte, in its place; the console's own lines end with a marker comment.
 */

const KEY_TYPE =
	/^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;

export type KeyPurpose = 'primary' | 'safety-net';

/** The comment that marks a line as the console's: which credential, for what. */
export function markerOf(purpose: KeyPurpose, credentialId: string): string {
	return `flotilla:${purpose}:${credentialId}`;
}

export interface KeyLine {
	type: string;
	/** The key's base64 blob: what identifies it, whatever options or comment the line has. */
	blob: string;
	comment: string;
}

/** The key on a line (options before it allowed); null for blank lines, comments and what sshd would not read. */
export function parseKeyLine(line: string): KeyLine | null {
	const text = line.trim();
	if (!text || text.startsWith('#')) return null;
	// Options may hold quoted spaces; the key is the first "<type> <base64>" pair of words.
	const words = text.split(/[ \t]+/);
	for (let i = 0; i < words.length - 1; i++) {
		if (KEY_TYPE.test(words[i]!) && /^[A-Za-z0-9+/]+={0,3}$/.test(words[i + 1]!)) {
			return { type: words[i]!, blob: words[i + 1]!, comment: words.slice(i + 2).join(' ') };
		}
	}
	return null;
}

/** `SHA256:<base64 without padding>`, as ssh-keygen -l prints it. */
export function keyFingerprint(blob: string): string {
	return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** The blob of a public key line `type base64 [comment]`. */
export function blobOf(publicKey: string): string {
	const parsed = parseKeyLine(publicKey);
	if (!parsed) throw new Error('Not an SSH public key line');
	return parsed.blob;
}

function linesOf(content: string): string[] {
	if (content === '') return [];
	const lines = content.split('\n');
	// A final newline leaves an empty last piece; a file without one keeps its last line as it is.
	if (lines.at(-1) === '') lines.pop();
	return lines;
}

function join(lines: string[], hadFinalNewline: boolean): string {
	if (!lines.length) return '';
	return lines.join('\n') + (hadFinalNewline ? '\n' : '');
}

export function hasKey(content: string, blob: string): boolean {
	return linesOf(content).some((l) => parseKeyLine(l)?.blob === blob);
}

/**
 * Appends `publicKey` with the marker, unless a line already holds that key (marked or not): the same key
 * twice adds nothing, so a phase run again changes nothing.
 */
export function addKey(content: string, publicKey: string, marker: string): string {
	const blob = blobOf(publicKey);
	if (hasKey(content, blob)) return content;
	const lines = linesOf(content);
	lines.push(`${publicKey.trim().split(/\s+/).slice(0, 2).join(' ')} ${marker}`);
	// A file without a final newline gets one before the new line; its last line itself is not changed.
	return join(lines, true);
}

/**
 * Removes the lines that hold `blob`. With `marker`, only those lines that also carry the marker (a key the
 * console added and manages); without it, every line of that key (the console's own old key, however it was
 * installed). Every other line stays as it was, in its place.
 */
export function removeKey(content: string, blob: string, marker?: string): string {
	const hadFinalNewline = content.endsWith('\n');
	const lines = linesOf(content);
	const kept = lines.filter((l) => {
		const parsed = parseKeyLine(l);
		if (parsed?.blob !== blob) return true;
		return marker !== undefined && !parsed.comment.split(/\s+/).includes(marker);
	});
	if (kept.length === lines.length) return content;
	return join(kept, hadFinalNewline);
}

/** Every key line, for the survey. */
export function keyLines(content: string): KeyLine[] {
	return linesOf(content).flatMap((l) => {
		const parsed = parseKeyLine(l);
		return parsed ? [parsed] : [];
	});
}
