import path from 'node:path';
import postgres from 'postgres';
import { openDatabase, type DatabaseHandle } from '../../src/lib/server/db';

const migrationsDir = path.resolve('drizzle');

/**
 * The PostgreSQL server the suite runs against. `npm test` always provides one (a throwaway server when
 * TEST_DATABASE_URL is not set), so its absence is an error, never a reason to skip.
 */
export function testDatabaseUrl(): string {
	const url = process.env.TEST_DATABASE_URL;
	if (!url) {
		throw new Error(
			'TEST_DATABASE_URL is not set. Run `npm test`, which starts a throwaway PostgreSQL, or point it at a server you own.'
		);
	}
	return url;
}

export function withDatabaseName(url: string, name: string): string {
	const u = new URL(url);
	u.pathname = `/${name}`;
	return u.toString();
}

/** A fresh, empty database on the test server; dropped again by the returned handle's close(). */
export async function freshPostgres(prefix = 'flotilla_it'): Promise<DatabaseHandle & { url: string }> {
	const adminUrl = testDatabaseUrl();
	const name = `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
	const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
	await admin.unsafe(`create database "${name}"`);
	const url = withDatabaseName(adminUrl, name);
	const handle = await openDatabase({ url, migrationsDir });
	return {
		...handle,
		url,
		close: async () => {
			await handle.close();
			await admin.unsafe(`drop database if exists "${name}" with (force)`);
			await admin.end();
		}
	};
}

export function freshPglite(): Promise<DatabaseHandle> {
	return openDatabase({ migrationsDir });
}

/** Both back-ends, so that every integration suite proves the one code path works on each. */
export const backends = [
	{ name: 'PGlite', open: freshPglite },
	{ name: 'PostgreSQL', open: () => freshPostgres() }
] as const;
