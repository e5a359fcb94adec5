import { describe, expect, it } from 'vitest';
import { safeNext } from './redirects';

describe('safeNext', () => {
	it('keeps paths on this console and drops everything else', () => {
		expect(safeNext('/settings?tab=tokens')).toBe('/settings?tab=tokens');
		for (const bad of [null, '', 'https://evil.example', '//evil.example', '/\\evil.example', 'javascript:alert(1)']) {
			expect(safeNext(bad)).toBe('/');
		}
	});
});
