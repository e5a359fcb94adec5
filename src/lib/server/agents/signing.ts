import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * The pull agent's signatures (docs/pull-agent.md, "Signatures"): HMAC-SHA256 under the node's secret, hex. The
 * key is the secret's text as the agent holds it (`openssl dgst -hmac`), so both sides use the same bytes.
 *
 * A request signs `METHOD\nPATH\nTIMESTAMP\nNONCE\nBODY`; a reply signs `STATUS\nNONCE\nTIMESTAMP\nBODY`, with the
 * request's nonce, so a reply cannot be replayed to another request.
 */

export const headers = {
	node: 'x-flotilla-node',
	timestamp: 'x-flotilla-timestamp',
	nonce: 'x-flotilla-nonce',
	signature: 'x-flotilla-signature',
	/** Only on the agent's enrolment: the one-time token it exchanges for its secret. */
	enrolToken: 'x-flotilla-enrol-token'
} as const;

/** How far a request's timestamp may be from the console's clock, either way. */
export const TIMESTAMP_WINDOW_SECONDS = 300;

export function newAgentSecret(): string {
	return randomBytes(32).toString('hex');
}

export function hmacHex(secret: string, text: string): string {
	return createHmac('sha256', secret).update(text, 'utf8').digest('hex');
}

export function requestText(r: { method: string; path: string; timestamp: string; nonce: string; body: string }) {
	return `${r.method}\n${r.path}\n${r.timestamp}\n${r.nonce}\n${r.body}`;
}

export function replyText(r: { status: number; nonce: string; timestamp: string; body: string }) {
	return `${r.status}\n${r.nonce}\n${r.timestamp}\n${r.body}`;
}

/** Constant-time comparison of two hex signatures (a wrong length is simply unequal). */
export function sameSignature(expected: string, given: string): boolean {
	const a = Buffer.from(expected, 'utf8');
	const b = Buffer.from(given.toLowerCase(), 'utf8');
	return a.length === b.length && timingSafeEqual(a, b);
}
