import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { addKey, blobOf, hasKey, keyFingerprint, markerOf, parseKeyLine, removeKey } from './authorized-keys';
import { generateEd25519 } from './openssh';

const other = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice@laptop';
const optioned = 'from="10.0.0.0/8",command="echo hi there" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob backup@host';
const file = `# managed by hand\n${other}\n\n${optioned}\n`;

describe('authorized_keys lines', () => {
	it('finds the key behind options with quoted spaces, and ignores comments and blanks', () => {
		expect(parseKeyLine(optioned)).toEqual({
			type: 'ssh-ed25519',
			blob: 'AAAAC3NzaC1lZDI1NTE5AAAAIBob',
			comment: 'backup@host'
		});
		expect(parseKeyLine('# ssh-ed25519 AAAA')).toBeNull();
		expect(parseKeyLine('   ')).toBeNull();
	});

	it('adds a key once with its marker, keeping every other line byte for byte', () => {
		const key = generateEd25519('t').publicKey;
		const once = addKey(file, key, markerOf('primary', 'abc'));
		expect(once.startsWith(file)).toBe(true);
		expect(once.slice(file.length)).toBe(`${key} flotilla:primary:abc\n`);
		expect(addKey(once, key, markerOf('primary', 'abc'))).toBe(once);
		// A file without a final newline gets one before the new line; its own lines are not touched.
		expect(addKey('a b c', key, 'm')).toBe(`a b c\n${key} m\n`);
	});

	it('removes only the lines of that key; with a marker, only the marked ones', () => {
		const key = generateEd25519('t').publicKey;
		const blob = blobOf(key);
		const marked = addKey(file, key, 'flotilla:safety-net:x');
		const handAdded = `${marked}${key} someone@else\n`;
		expect(removeKey(handAdded, blob, 'flotilla:safety-net:x')).toBe(`${file}${key} someone@else\n`);
		expect(removeKey(handAdded, blob)).toBe(file);
		expect(removeKey(file, blob)).toBe(file);
		expect(hasKey(removeKey(handAdded, blob), blob)).toBe(false);
	});
});

describe('a key pair made in the console', () => {
	it('is an OpenSSH ed25519 private key that ssh2 reads, whose public half matches', () => {
		const { privateKey, publicKey } = generateEd25519('flotilla test');
		const parsed = ssh2.utils.parseKey(privateKey);
		if (parsed instanceof Error) throw parsed;
		expect(parsed.type).toBe('ssh-ed25519');
		expect(parsed.isPrivateKey()).toBe(true);
		expect(`ssh-ed25519 ${parsed.getPublicSSH().toString('base64')}`).toBe(publicKey);
		expect(parsed.comment).toBe('flotilla test');
		const data = Buffer.from('proof');
		expect(parsed.verify(data, parsed.sign(data))).toBe(true);
		expect(keyFingerprint(blobOf(publicKey))).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
	});
});
