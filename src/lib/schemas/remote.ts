import { z } from 'zod';
import { fromText, wrongType } from './common';

/**
 * Values from operators that end up on a node's command line (refs, branches, packages, units, paths,
 * host names). Each is checked against the rules of the program that reads it, and none may start with
 * `-`, which a program would read as an option whatever the shell quoting. The `sh` tag quotes them.
 */

const noDash = (v: string) => !v.startsWith('-');
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const controlChars = /[\u0000-\u001f\u007f]/;

/** A full or abbreviated commit id (SHA-1, or SHA-256 repositories); git abbreviates to no fewer than 4. */
export const commitSchema = z
	.string(wrongType('is required'))
	.trim()
	.regex(/^[0-9a-f]{4,64}$/i, 'must be a commit id: 4 to 64 hexadecimal characters')
	.transform((v) => v.toLowerCase());

/** `git check-ref-format` rules, plus: no leading dash, at most 255 characters. */
export const gitRefSchema = z
	.string(wrongType('is required'))
	.min(1, 'is required')
	.max(255, 'must be at most 255 characters')
	.refine(noDash, 'must not start with -')
	.refine((v) => !controlChars.test(v), 'must not contain control characters')
	.refine((v) => !/[\s~^:?*[\\]/.test(v), 'must not contain spaces or any of ~ ^ : ? * [ \\')
	.refine((v) => !v.includes('..') && !v.includes('@{') && v !== '@', 'must not contain .. or @{ or be @')
	.refine(
		(v) => !v.startsWith('/') && !v.endsWith('/') && !v.includes('//'),
		'must not start or end with / or contain //'
	)
	.refine((v) => !v.endsWith('.') && !v.endsWith('.lock'), 'must not end with . or .lock')
	.refine((v) => v.split('/').every((part) => !part.startsWith('.')), 'no part may start with .');

export const branchSchema = gitRefSchema.refine((v) => v !== 'HEAD', 'must name a branch, not HEAD');

/** A Debian package name (Debian Policy 5.6.1). */
export const packageNameSchema = z
	.string(wrongType('is required'))
	.regex(/^[a-z0-9][a-z0-9+.-]+$/, 'must be a Debian package name: lower-case letters, digits, + - .');

/** A systemd unit name, with or without its type suffix. */
export const unitNameSchema = z
	.string(wrongType('is required'))
	.max(255, 'must be at most 255 characters')
	.regex(/^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]*$/, 'must be a systemd unit name: letters, digits, : _ . @ \\ -');

/** An absolute, normalised path on a node. */
export const absolutePathSchema = z
	.string(wrongType('is required'))
	.max(4096, 'must be at most 4096 characters')
	.refine((v) => v.startsWith('/'), 'must be an absolute path')
	.refine((v) => !controlChars.test(v), 'must not contain control characters')
	.refine((v) => !v.split('/').some((part) => part === '..' || part === '.'), 'must not contain . or .. parts')
	.refine((v) => v === '/' || (!v.endsWith('/') && !v.includes('//')), 'must be normalised (no // or trailing /)');

const ipv4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const hostnameLabel = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A DNS name (RFC 1123), an IPv4 address or an IPv6 address, as ssh would be given it. */
export const hostSchema = z
	.string(wrongType('is required'))
	.trim()
	.min(1, 'is required')
	.max(253, 'must be at most 253 characters')
	.refine((v) => ipv4.test(v) || isIPv6(v) || isHostname(v), 'must be a host name or an IP address');

// A name whose last label is all digits would be read as a (malformed) address, so it is refused.
function isHostname(v: string): boolean {
	const labels = v.split('.');
	return labels.every((label) => hostnameLabel.test(label)) && !/^\d+$/.test(labels[labels.length - 1]!);
}

function isIPv6(v: string): boolean {
	if (!/^[0-9a-f:.]+$/i.test(v) || !v.includes(':')) return false;
	try {
		return new URL(`http://[${v}]/`).hostname.length > 2;
	} catch {
		return false;
	}
}

/** A Unix login name. */
export const unixUserSchema = z
	.string(wrongType('is required'))
	.regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a Unix user name: lower-case letters, digits, _ -, at most 32');

export const portSchema = fromText(
	z
		.number(wrongType('must be a number'))
		.int('must be a whole number')
		.min(1, 'must be 1 to 65535')
		.max(65535, 'must be 1 to 65535')
);
