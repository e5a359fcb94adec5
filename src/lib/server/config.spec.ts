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

	it('schedules the system update scan daily at 02:00 UTC unless told otherwise, and checks cron and zone', () => {
		expect(loadConfig({})).toMatchObject({ systemScanCron: '0 2 * * *', systemScanTimeZone: 'UTC' });
		expect(loadConfig({ FLOTILLA_SYSTEM_SCAN_CRON: 'off' }).systemScanCron).toBeNull();
		expect(
			loadConfig({ FLOTILLA_SYSTEM_SCAN_CRON: '30 3 * * 1-5', FLOTILLA_SYSTEM_SCAN_TZ: 'Europe/Berlin' })
		).toMatchObject({ systemScanCron: '30 3 * * 1-5', systemScanTimeZone: 'Europe/Berlin' });
		expect(() => loadConfig({ FLOTILLA_SYSTEM_SCAN_CRON: '0 25 * * *' })).toThrow(
			/FLOTILLA_SYSTEM_SCAN_CRON: must be a five-field cron/
		);
		expect(() => loadConfig({ FLOTILLA_SYSTEM_SCAN_TZ: 'Mars/Olympus' })).toThrow(
			/FLOTILLA_SYSTEM_SCAN_TZ: must be an IANA/
		);
	});

	it('treats empty variables as unset', () => {
		expect(loadConfig({ DATABASE_URL: '' }).databaseUrl).toBeUndefined();
	});

	it('fails loudly and names the variable that is wrong', () => {
		expect(() => loadConfig({ DATABASE_URL: 'mysql://x' })).toThrow(/DATABASE_URL: must be a postgres/);
		expect(() => loadConfig({ FLOTILLA_LOG_LEVEL: 'chatty' })).toThrow(/FLOTILLA_LOG_LEVEL/);
	});

	it('derives what the code reads from the variables: units converted, flags as booleans', () => {
		const c = loadConfig({ FLOTILLA_TASK_LEASE_SECONDS: '10', FLOTILLA_DEMO: '1', FLOTILLA_HEALTH_SWEEP_SECONDS: '0' });
		expect(c.taskLeaseMs).toBe(10_000);
		expect(c.shutdownGraceMs).toBe(30_000);
		expect(c.demo).toBe(true);
		expect(c.healthSweepSeconds).toBe(0);
		expect(loadConfig({}).demo).toBe(false);
		expect(loadConfig({})).toMatchObject({ retentionDays: 90, auditRetentionDays: 365 });
		expect(loadConfig({ FLOTILLA_RETENTION_DAYS: '0' }).retentionDays).toBe(0);
		expect(() => loadConfig({ FLOTILLA_AUDIT_RETENTION_DAYS: '-1' })).toThrow(/FLOTILLA_AUDIT_RETENTION_DAYS/);
		expect(loadConfig({})).toMatchObject({
			certScanSeconds: 86_400,
			certThresholds: { warnDays: 30, criticalDays: 7 }
		});
		expect(loadConfig({ FLOTILLA_CERT_WARN_DAYS: '60', FLOTILLA_CERT_CRITICAL_DAYS: '14' }).certThresholds).toEqual({
			warnDays: 60,
			criticalDays: 14
		});
		expect(() => loadConfig({ FLOTILLA_CERT_WARN_DAYS: '5' })).toThrow(
			/FLOTILLA_CERT_CRITICAL_DAYS: must not be more than FLOTILLA_CERT_WARN_DAYS/
		);
		expect(() => loadConfig({ FLOTILLA_TASK_LEASE_SECONDS: '1.5' })).toThrow(
			/FLOTILLA_TASK_LEASE_SECONDS: must be a whole number/
		);
	});

	it('reads ORIGIN as the console’s public origin, refusing one with a path or that is not http(s)', () => {
		expect(loadConfig({}).publicOrigin).toBeNull();
		expect(loadConfig({ ORIGIN: 'https://Flotilla.Example.com/' }).publicOrigin).toBe('https://flotilla.example.com');
		expect(loadConfig({ ORIGIN: 'http://127.0.0.1:3000' }).publicOrigin).toBe('http://127.0.0.1:3000');
		for (const bad of ['https://flotilla.example.com/console', 'ftp://flotilla.example.com', 'flotilla.example.com']) {
			expect(() => loadConfig({ ORIGIN: bad }), bad).toThrow(/ORIGIN: must be an http:\/\/ or https:\/\/ URL/);
		}
	});
});
