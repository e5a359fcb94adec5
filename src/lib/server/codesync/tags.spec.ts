import { describe, expect, it } from 'vitest';
import { supersedes, tagVersion } from './tags';

describe('tag following', () => {
	it('reads a semantic version from a tag the glob matches, with or without a leading v', () => {
		expect(tagVersion('v*', 'v1.10.0')).toBe('1.10.0');
		expect(tagVersion('release-*', 'release-2.0.0-rc.1')).toBe(null);
		expect(tagVersion('*', '2.0.0-rc.1')).toBe('2.0.0-rc.1');
		expect(tagVersion('v*', 'nightly')).toBe(null);
		expect(tagVersion('v*', 'x1.0.0')).toBe(null);
		expect(tagVersion('v1.*', 'v2.0.0')).toBe(null);
		expect(tagVersion('v*', undefined)).toBe(null);
	});

	it('treats the glob literally but for * and ?', () => {
		expect(tagVersion('v1.?.0', 'v1.2.0')).toBe('1.2.0');
		expect(tagVersion('v1.?.0', 'v1x2.0')).toBe(null);
	});

	it('orders by semantic version, not by arrival: v1.10.0 beats a later v1.9.3; a release beats its candidate', () => {
		expect(supersedes('v*', 'v1.10.0', 'v1.9.3')).toBe(true);
		expect(supersedes('v*', 'v1.9.3', 'v1.10.0')).toBe(false);
		expect(supersedes('v*', 'v2.0.0', 'v2.0.0-rc.1')).toBe(true);
		expect(supersedes('v*', 'v2.0.0-rc.2', 'v2.0.0')).toBe(false);
		expect(supersedes('v*', 'v1.0.0', 'v1.0.0')).toBe(false);
		expect(supersedes('v*', 'v1.0.0', null)).toBe(true);
		expect(supersedes('v*', 'nightly', null)).toBe(false);
	});
});
