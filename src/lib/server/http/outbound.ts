import { lookup } from 'node:dns/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import type { Readable } from 'node:stream';

/**
 * Requests the console sends to addresses an admin typed in (notification webhooks, appliance images by URL). A target must not turn
 * the console into a probe of its own network: only http and https, and no loopback, link-local or private
 * address unless an admin allowed them. The name is resolved once and the connection goes to exactly the
 * address that was checked (a second lookup by the HTTP client could answer differently: DNS rebinding), and
 * redirects are never followed.
 */

/** Why a target was refused; the message names the address so an admin can tell what to allow. */
export class TargetRefused extends Error {}

const privateRanges = new BlockList();
for (const [net, bits] of [
	['0.0.0.0', 8],
	['10.0.0.0', 8],
	['100.64.0.0', 10],
	['127.0.0.0', 8],
	['169.254.0.0', 16],
	['172.16.0.0', 12],
	['192.168.0.0', 16],
	['224.0.0.0', 4],
	['240.0.0.0', 4]
] as const) {
	privateRanges.addSubnet(net, bits, 'ipv4');
}
for (const [net, bits] of [
	['::', 128],
	['::1', 128],
	['fc00::', 7],
	['fe80::', 10],
	['ff00::', 8]
] as const) {
	privateRanges.addSubnet(net, bits, 'ipv6');
}

/** Loopback, link-local, private (RFC 1918, fc00::/7), unspecified, multicast; IPv4-mapped IPv6 as its IPv4. */
export function isPrivateAddress(address: string): boolean {
	const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
	if (mapped) return privateRanges.check(mapped[1]!, 'ipv4');
	const family = isIP(address);
	if (family === 4) return privateRanges.check(address, 'ipv4');
	if (family === 6) return privateRanges.check(address, 'ipv6');
	return true;
}

export interface ResolvedTarget {
	url: URL;
	address: string;
	family: 4 | 6;
}

/** Checks a target's scheme and resolves its host once; refused unless every check passes. */
export async function resolveTarget(raw: string, opts: { allowPrivate: boolean }): Promise<ResolvedTarget> {
	let url: URL;
	try {
		url = new URL(raw);
	} catch {
		throw new TargetRefused('is not a URL');
	}
	if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TargetRefused('must be an http or https URL');
	if (url.username || url.password) throw new TargetRefused('must not carry a user name or password');
	const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
	let address: string;
	let family: 4 | 6;
	if (isIP(host)) {
		address = host;
		family = isIP(host) as 4 | 6;
	} else {
		try {
			// The first answer is the one connected to: checking one and connecting to another would reopen the gap.
			const found = await lookup(host, { verbatim: true });
			address = found.address;
			family = found.family as 4 | 6;
		} catch {
			throw new TargetRefused(`host ${host} does not resolve`);
		}
	}
	if (!opts.allowPrivate && isPrivateAddress(address)) {
		throw new TargetRefused(
			`resolves to ${address}, a loopback, link-local or private address (an admin may allow those in Settings)`
		);
	}
	return { url, address, family };
}

export interface OutboundAnswer {
	status: number;
	/** The start of the answer's body (enough to show why a receiver refused). */
	body: string;
}

const MAX_BODY_KEPT = 2_048;

/**
 * POSTs `body` to a resolved target, connecting to its checked address (TLS still verifies the host name).
 * A redirect is an answer like any other, never followed. The whole exchange has a deadline: a receiver that
 * hangs costs at most `timeoutMs`.
 */
export function postTo(
	target: ResolvedTarget,
	body: string,
	headers: Record<string, string>,
	timeoutMs: number
): Promise<OutboundAnswer> {
	const send = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
	return new Promise((resolve, reject) => {
		const req = send(
			target.url,
			{
				method: 'POST',
				headers: { 'content-type': 'application/json', 'user-agent': 'Flotilla', ...headers },
				// Pinned: the connection goes to the address that was checked, whatever DNS says now.
				lookup: (_host, options, callback) => {
					if ((options as { all?: boolean }).all) callback(null, [{ address: target.address, family: target.family }]);
					else callback(null, target.address, target.family);
				},
				agent: false
			},
			(res) => {
				const chunks: Buffer[] = [];
				let kept = 0;
				res.on('data', (c: Buffer) => {
					if (kept < MAX_BODY_KEPT) {
						chunks.push(c);
						kept += c.length;
					}
				});
				res.on('end', () =>
					resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8').slice(0, MAX_BODY_KEPT) })
				);
				res.on('error', reject);
			}
		);
		const timer = setTimeout(() => req.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
		req.on('error', reject);
		req.on('close', () => clearTimeout(timer));
		req.end(body);
	});
}

export interface OutboundDownload {
	status: number;
	/** The declared length, when the server sent one. */
	contentLength: number | null;
	/** The `Content-Range` of a partial answer (206), as sent. */
	contentRange: string | null;
	/** The body; destroyed with an error when no byte arrives for `idleMs`. */
	body: Readable;
}

/**
 * GETs a resolved target, connecting to its checked address, redirects not followed (a redirect is an answer
 * whose body the caller refuses). For large bodies (an appliance image): the caller reads the stream; a server
 * that stops sending for `idleMs` ends it with an error rather than holding the console forever.
 */
export function getFrom(
	target: ResolvedTarget,
	idleMs: number,
	headers: Record<string, string> = {}
): Promise<OutboundDownload> {
	const send = target.url.protocol === 'https:' ? httpsRequest : httpRequest;
	return new Promise((resolve, reject) => {
		const req = send(
			target.url,
			{
				method: 'GET',
				headers: { ...headers, 'user-agent': 'Flotilla' },
				lookup: (_host, options, callback) => {
					if ((options as { all?: boolean }).all) callback(null, [{ address: target.address, family: target.family }]);
					else callback(null, target.address, target.family);
				},
				agent: false,
				timeout: idleMs
			},
			(res) => {
				const length = Number(res.headers['content-length']);
				resolve({
					status: res.statusCode ?? 0,
					contentLength: res.headers['content-length'] !== undefined && Number.isSafeInteger(length) ? length : null,
					contentRange: res.headers['content-range'] ?? null,
					body: res
				});
			}
		);
		req.on('timeout', () => req.destroy(new Error(`nothing received for ${idleMs} ms`)));
		req.on('error', reject);
		req.end();
	});
}
