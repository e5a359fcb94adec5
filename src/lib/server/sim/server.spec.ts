import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { newHostKey } from './server';

describe('newHostKey', () => {
	it('only hands out keys that ssh2 itself can read', () => {
		for (let i = 0; i < 300; i++) expect(ssh2.utils.parseKey(newHostKey())).not.toBeInstanceOf(Error);
	});
});
