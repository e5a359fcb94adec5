import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { connect, type DetailedPeerCertificate } from 'node:tls';

/**
 * A TLS handshake from the console with a node's endpoint, to see the certificate it really serves (not the
 * file on disk, which a missed reload leaves different). Nothing is verified here: the inventory reports what
 * is served, and judges the chain itself (./x509.ts).
 */
export interface Served {
	leaf: X509Certificate;
	/** What the server sent after the leaf, in order. */
	chain: X509Certificate[];
}

export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** The SNI name: the one configured, else the host when it is a name (SNI never carries an address). */
export function sniFor(host: string, servername?: string | null): string | undefined {
	if (servername) return servername;
	return isIP(host) ? undefined : host;
}

function chainOf(peer: DetailedPeerCertificate): X509Certificate[] {
	const out: X509Certificate[] = [];
	const seen = new Set<string>([peer.fingerprint256]);
	// A self-signed certificate is its own issuer: the walk stops at the first one seen before.
	for (let c = peer.issuerCertificate; c?.raw && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
		seen.add(c.fingerprint256);
		out.push(new X509Certificate(c.raw));
	}
	return out;
}

/**
 * Handshakes with `host:port` and returns the served certificate. Fails (with a reason an operator reads) when
 * nothing answers, the handshake fails, or it takes longer than `timeoutMs`; aborting `signal` ends it at once.
 */
export function handshake(
	host: string,
	port: number,
	opts: { servername?: string | null; timeoutMs?: number; signal?: AbortSignal } = {}
): Promise<Served> {
	const timeoutMs = opts.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
	return new Promise((resolve, reject) => {
		if (opts.signal?.aborted) return reject(opts.signal.reason ?? new Error('aborted'));
		const servername = sniFor(host, opts.servername);
		const socket = connect({ host, port, ...(servername ? { servername } : {}), rejectUnauthorized: false });
		const done = (err: Error | null, served?: Served) => {
			clearTimeout(timer);
			opts.signal?.removeEventListener('abort', onAbort);
			socket.destroy();
			if (err) reject(err);
			else resolve(served!);
		};
		const onAbort = () => done(opts.signal?.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
		const timer = setTimeout(
			() => done(new Error(`no TLS handshake with ${host}:${port} within ${Math.round(timeoutMs / 1000)} s`)),
			timeoutMs
		);
		opts.signal?.addEventListener('abort', onAbort, { once: true });
		socket.once('secureConnect', () => {
			const peer = socket.getPeerCertificate(true);
			if (!peer?.raw) return done(new Error(`${host}:${port} sent no certificate`));
			done(null, { leaf: new X509Certificate(peer.raw), chain: chainOf(peer) });
		});
		socket.once('error', (err: NodeJS.ErrnoException) =>
			done(new Error(`TLS handshake with ${host}:${port} failed: ${err.code ?? err.message}`))
		);
	});
}
