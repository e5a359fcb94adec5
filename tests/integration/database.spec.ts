import { readFileSync } from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/lib/server/db';
import { testDatabaseUrl, withDatabaseName } from '../support/databases';

const migrationsDir = path.resolve('drizzle');

describe('migrations on PostgreSQL', () => {
	const name = `flotilla_mig_${Date.now().toString(36)}`;
	const admin = postgres(testDatabaseUrl(), { max: 1, onnotice: () => {} });

	afterAll(async () => {
		await admin.unsafe(`drop database if exists "${name}" with (force)`);
		await admin.end();
	});

	it('are applied once when several consoles start at the same time', async () => {
		await admin.unsafe(`create database "${name}"`);
		const url = withDatabaseName(testDatabaseUrl(), name);
		const handles = await Promise.all([1, 2, 3].map(() => openDatabase({ url, migrationsDir })));
		const check = postgres(url, { max: 1, onnotice: () => {} });
		const applied = await check`select count(*)::int as n from drizzle.__drizzle_migrations`;
		const tables =
			await check`select table_name from information_schema.tables where table_schema = 'public' order by 1`;
		await check.end();
		await Promise.all(handles.map((h) => h.close()));
		const journal = JSON.parse(readFileSync(path.join(migrationsDir, 'meta', '_journal.json'), 'utf8'));
		expect(applied[0]!.n).toBe(journal.entries.length);
		expect(tables.map((t) => t.table_name)).toEqual(
			expect.arrayContaining(['api_tokens', 'audit_log', 'credentials', 'login_throttle', 'nodes', 'sessions', 'users'])
		);
	});
});

describe('the embedded database', () => {
	it('refuses a second console on the same data folder', async () => {
		const { mkdtempSync, writeFileSync } = await import('node:fs');
		const { tmpdir } = await import('node:os');
		const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-pglite-'));
		// Pretend another live process (our parent) holds the folder.
		writeFileSync(path.join(dir, 'pglite.pid'), String(process.ppid));
		await expect(openDatabase({ pgliteDir: path.join(dir, 'pglite'), migrationsDir })).rejects.toThrow(
			/in use by process/
		);
	});
});
