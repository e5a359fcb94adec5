import { describe, expect, it } from 'vitest';
import { nativeCiphers } from './connection';

describe('ssh2 crypto binding', () => {
	// The bootstrap builds it against the running Node; a JavaScript fallback doubles every connection's CPU.
	it('is loaded, so SSH encrypts natively', () => {
		expect(nativeCiphers()).toBe(true);
	});
});
