import { describe, expect, it } from 'vitest';
import { safeNext } from './redirects';

describe('safeNext', () => {
	it('keeps paths on this console', () => {
		expect(safeNext('/settings?tab=tokens')).toBe('/settings?tab=tokens');
		expect(safeNext('/audit#top')).toBe('/audit#top');
	});

	it('drops everything that could lead to another site', () => {
		const hostile = [
			null,
			'',
			'https://evil.example',
			'//evil.example',
			'/\\evil.example',
			'/\t/evil.example',
			'/\n/evil.example',
			'/\r//evil.example',
			'/%09/evil.example/'.replace('%09', '\t'),
			'javascript:alert(1)',
			'\\\\evil.example'
		];
		for (const bad of hostile) expect(safeNext(bad), JSON.stringify(bad)).toBe('/');
	});
});
