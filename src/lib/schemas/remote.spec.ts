import { describe, expect, it } from 'vitest';
import { hostileStrings } from '../../../tests/fixtures/hostile-strings';
import {
	absolutePathSchema,
	branchSchema,
	commitSchema,
	gitRefSchema,
	hostSchema,
	packageNameSchema,
	unitNameSchema,
	unixUserSchema
} from './remote';

const ok = (schema: { safeParse(v: unknown): { success: boolean } }, v: string) => schema.safeParse(v).success;

describe('values that reach a node', () => {
	it('accept what the programs accept', () => {
		for (const ref of ['main', 'release/2026.11', 'v1.2.3', 'feature/foo-bar_baz', 'a1b2c3d'])
			expect(ok(gitRefSchema, ref), ref).toBe(true);
		expect(commitSchema.parse('A1B2C3D4E5F6A7B8C9D0A1B2C3D4E5F6A7B8C9D0')).toBe(
			'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0'
		);
		for (const p of ['nginx', 'libssl3', 'g++', 'python3.11-venv']) expect(ok(packageNameSchema, p), p).toBe(true);
		for (const u of ['nginx.service', 'getty@tty1.service', 'app-web', 'dev-disk-by\\x2duuid.device'])
			expect(ok(unitNameSchema, u), u).toBe(true);
		for (const p of ['/', '/opt/app', '/etc/ssl/private/site.pem']) expect(ok(absolutePathSchema, p), p).toBe(true);
		for (const h of ['web-01.example.com', '127.0.1.10', '::1', 'fe80::1', 'localhost'])
			expect(ok(hostSchema, h), h).toBe(true);
		expect(ok(unixUserSchema, 'deploy')).toBe(true);
	});

	it('refuse what git check-ref-format refuses, and leading dashes everywhere', () => {
		const badRefs = [
			'',
			'-main',
			'--upload-pack=x',
			'a..b',
			'a b',
			'a~1',
			'a^',
			'a:b',
			'a?',
			'a*',
			'a[',
			'a\\b',
			'/a',
			'a/',
			'a//b',
			'a.',
			'a.lock',
			'.a',
			'a/.b',
			'@',
			'a@{1}',
			'a\nb',
			'a\u0000'
		];
		for (const ref of badRefs) expect(ok(gitRefSchema, ref), JSON.stringify(ref)).toBe(false);
		expect(ok(branchSchema, 'HEAD')).toBe(false);
		for (const p of ['-rf', 'Nginx', 'a', 'nginx;ls']) expect(ok(packageNameSchema, p), p).toBe(false);
		for (const u of ['-x.service', 'a b', 'a;b']) expect(ok(unitNameSchema, u), u).toBe(false);
		for (const p of ['relative', '/opt/../etc', '/opt/./x', '/opt//x', '/opt/', '/opt/\nx'])
			expect(ok(absolutePathSchema, p), p).toBe(false);
		for (const h of ['-oProxyCommand=x', 'a_b.com', 'a..b', 'x;y', '999.1.1.1.1', ''])
			expect(ok(hostSchema, h), h).toBe(false);
		for (const u of ['-root', 'Root', 'a b']) expect(ok(unixUserSchema, u), u).toBe(false);
	});

	it('let no hostile string through as a package, unit, path, host or user', () => {
		for (const hostile of hostileStrings('/tmp/canary')) {
			for (const schema of [packageNameSchema, unitNameSchema, hostSchema, unixUserSchema, commitSchema]) {
				expect(ok(schema, hostile), JSON.stringify(hostile)).toBe(false);
			}
		}
	});
});
