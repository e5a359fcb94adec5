import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The `X-Flotilla-Signature` header of a webhook delivery: `t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * `<t>.<body>` with the channel's secret. The timestamp is inside the MAC, so a receiver that refuses old
 * timestamps (and remembers the delivery ids it saw within its tolerance) refuses replays (docs/integrations.md).
 */
export const SIGNATURE_HEADER = 'X-Flotilla-Signature';

export function signBody(secret: string, body: string, at: Date = new Date()): string {
	const t = Math.floor(at.getTime() / 1000);
	return `t=${t},v1=${mac(secret, t, body)}`;
}

function mac(secret: string, t: number, body: string): string {
	return createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

/** What a receiver does: the MAC matches and the timestamp is within `toleranceSeconds` of `now`. */
export function verifySignature(
	secret: string,
	header: string,
	body: string,
	opts: { toleranceSeconds: number; now?: Date }
): boolean {
	const parts = Object.fromEntries(header.split(',').map((p) => p.split('=', 2) as [string, string]));
	const t = Number(parts.t);
	if (!Number.isInteger(t) || !parts.v1) return false;
	const now = Math.floor((opts.now ?? new Date()).getTime() / 1000);
	if (Math.abs(now - t) > opts.toleranceSeconds) return false;
	const expected = Buffer.from(mac(secret, t, body), 'hex');
	const given = Buffer.from(parts.v1, 'hex');
	return given.length === expected.length && timingSafeEqual(given, expected);
}
