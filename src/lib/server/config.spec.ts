import { describe, expect, it } from 'vitest';
import { loadConfig } from './config';

describe('configuration', () => {
	it('defaults to the embedded database in ./data', () => {
		const c = loadConfig({});
		expect(c.databaseUrl).toBeUndefined();
		expect(c.dataDir).toMatch(/\/data$/);
		expect(c.adminUser).toBe('admin');
		expect(c.adminPassword).toBeUndefined();
	});

	it('treats empty variables as unset', () => {
		expect(loadConfig({ DATABASE_URL: '' }).databaseUrl).toBeUndefined();
	});

	it('fails loudly and names the variable that is wrong', () => {
		expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL: must be a postgres/);
		expect(() => loadConfig({ FLOTILLA_LOG_LEVEL: 'chatty' })).toThrow(/FLOTILLA_LOG_LEVEL/);
	});
});
