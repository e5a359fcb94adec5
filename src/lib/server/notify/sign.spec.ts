import { describe, expect, it } from 'vitest';
import { signBody, verifySignature } from './sign';

describe('webhook signatures', () => {
	const secret = 'a-secret-of-some-length';
	const body = '{"event":"run.failed"}';
	const at = new Date('2026-01-01T00:00:00Z');

	it('verifies what was signed, within the tolerance', () => {
		const header = signBody(secret, body, at);
		expect(header).toMatch(/^t=1767225600,v1=[0-9a-f]{64}$/);
		expect(verifySignature(secret, header, body, { toleranceSeconds: 300, now: at })).toBe(true);
	});

	it('refuses another body, another secret, and a replay past the tolerance', () => {
		const header = signBody(secret, body, at);
		expect(verifySignature(secret, header, body + ' ', { toleranceSeconds: 300, now: at })).toBe(false);
		expect(verifySignature('another-secret-value', header, body, { toleranceSeconds: 300, now: at })).toBe(false);
		const later = new Date(at.getTime() + 301_000);
		expect(verifySignature(secret, header, body, { toleranceSeconds: 300, now: later })).toBe(false);
		// The timestamp is inside the MAC: moving it forward breaks the signature.
		const moved = header.replace('t=1767225600', 't=1767225900');
		expect(verifySignature(secret, moved, body, { toleranceSeconds: 300, now: later })).toBe(false);
		expect(verifySignature(secret, 'garbage', body, { toleranceSeconds: 300, now: at })).toBe(false);
	});
});
