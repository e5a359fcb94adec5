import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { sql, type SQL } from 'drizzle-orm';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePostgres } from 'drizzle-orm/postgres-js';
import { migrate as migratePostgres } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import * as schema from './schema';

/** One query API for both back-ends: services never know which one they run on. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

/** What `db().transaction` hands its callback. */
export type Transaction = Parameters<Parameters<Database['transaction']>[0]>[0];

export type DatabaseKind = 'pglite' | 'postgres';

export interface DatabaseHandle {
	db: Database;
	kind: DatabaseKind;
	/** The driver underneath, for pg-boss (which brings its own pool on PostgreSQL and shares PGlite's one connection). */
	driver: { kind: 'pglite'; client: PGlite } | { kind: 'postgres'; url: string };
	/** LISTEN on a channel; resolves once subscribed, to a function that unsubscribes. */
	listen(channel: string, onMessage: (payload: string) => void): Promise<() => Promise<void>>;
	close(): Promise<void>;
}

export interface OpenOptions {
	/** PostgreSQL URL; when absent the embedded PGlite is used. */
	url?: string;
	/** Folder for PGlite's files; absent means in memory (tests). */
	pgliteDir?: string;
	migrationsDir: string;
}

// Any constant will do; it only has to be the same for every instance that migrates this database.
const MIGRATION_LOCK_ID = 7_140_231;

export async function openDatabase(options: OpenOptions): Promise<DatabaseHandle> {
	return options.url
		? openPostgres(options.url, options.migrationsDir)
		: openPglite(options.pgliteDir, options.migrationsDir);
}

async function openPostgres(url: string, migrationsFolder: string): Promise<DatabaseHandle> {
	const client = postgres(url, { max: 10, onnotice: () => {} });
	const db = drizzlePostgres(client, { schema });
	try {
		// Several consoles may start at once against one server. The advisory lock is held on a reserved
		// connection (session-level locks belong to a connection, not to the pool) while one migrates.
		const lock = await client.reserve();
		try {
			await lock`select pg_advisory_lock(${MIGRATION_LOCK_ID})`;
			await migratePostgres(db, { migrationsFolder });
		} finally {
			await lock`select pg_advisory_unlock(${MIGRATION_LOCK_ID})`;
			lock.release();
		}
	} catch (err) {
		await client.end({ timeout: 5 });
		throw err;
	}
	return {
		db: db as unknown as Database,
		kind: 'postgres',
		driver: { kind: 'postgres', url },
		// postgres.js keeps one dedicated connection for all listeners and re-subscribes after it reconnects.
		listen: async (channel, onMessage) => {
			const sub = await client.listen(channel, onMessage);
			return () => sub.unlisten();
		},
		close: () => client.end({ timeout: 5 })
	};
}

async function openPglite(dir: string | undefined, migrationsFolder: string): Promise<DatabaseHandle> {
	let release = () => {};
	if (dir) {
		mkdirSync(dir, { recursive: true });
		release = lockPgliteDir(dir);
	}
	// PostgreSQL's default 128 MB of shared buffers sit in PGlite's WebAssembly memory, inside the console's
	// RSS, while the files it reads are in the kernel's page cache anyway: 16 MB took 132 MB off the console's
	// RSS during a 2,000-task run at the same wall time (docs/benchmarks.md, "Memory on PGlite").
	const client = new PGlite(dir, { startParams: [...PGlite.defaultStartParams, '-c', 'shared_buffers=16MB'] });
	const close = async () => {
		await client.close();
		release();
	};
	const db = drizzlePglite(client, { schema });
	try {
		await client.waitReady;
		await migratePglite(db, { migrationsFolder });
	} catch (err) {
		await close();
		throw err;
	}
	return {
		db: db as unknown as Database,
		kind: 'pglite',
		driver: { kind: 'pglite', client },
		listen: (channel, onMessage) => client.listen(channel, onMessage),
		close
	};
}

/**
 * PGlite is a single-process database: two consoles on one data folder would corrupt it. A pid file
 * turns that mistake into a clear error at start-up.
 */
function lockPgliteDir(dir: string): () => void {
	const lockFile = path.join(dir, '..', 'pglite.pid');
	for (;;) {
		try {
			// 'wx' creates the file only if it does not exist: of two consoles starting together, one wins.
			writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
			return () => rmSync(lockFile, { force: true });
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
		}
		const pid = Number(readFileSync(lockFile, 'utf8'));
		if (pid && pid !== process.pid && processAlive(pid)) {
			throw new Error(
				`The embedded database in ${dir} is in use by process ${pid}. Stop it, or set DATABASE_URL to share a PostgreSQL server between consoles.`
			);
		}
		// Left behind by a console that died: take it over.
		rmSync(lockFile, { force: true });
	}
}

function processAlive(pid: number): boolean {
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		return (err as NodeJS.ErrnoException).code === 'EPERM';
	}
}

let active: DatabaseHandle | undefined;

/** The process-wide database, set once at start-up (or by a test). */
export function useDatabase(handle: DatabaseHandle | undefined): void {
	active = handle;
}

export function db(): Database {
	if (!active) throw new Error('Database not initialised: call openDatabase() and useDatabase() first');
	return active.db;
}

export function databaseHandle(): DatabaseHandle {
	if (!active) throw new Error('Database not initialised: call openDatabase() and useDatabase() first');
	return active;
}

export function databaseKind(): DatabaseKind | undefined {
	return active?.kind;
}

/**
 * Rows of a hand-written statement, on either back-end (postgres.js answers with an array of rows, PGlite with
 * `{ rows }`). For the few statements the query builder cannot express, such as batch writes from a recordset.
 */
export async function queryRows<T>(query: SQL): Promise<T[]> {
	return rowsOf<T>(await db().execute(query));
}

/**
 * A value as JSON text for a `jsonb` parameter. PostgreSQL refuses the escape `\u0000` in jsonb, so a NUL
 * character (a node printing binary output) would fail the statement, and with it every write batched into
 * it: NULs become U+FFFD instead.
 */
export function jsonParam(value: unknown): string {
	const text = JSON.stringify(value);
	if (!text.includes('\\u0000')) return text;
	return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? v.replaceAll('\0', '\uFFFD') : v));
}

/** The rows of what `execute` answered, on either back-end (inside a transaction, say). */
export function rowsOf<T>(result: unknown): T[] {
	const r = result as T[] | { rows: T[] };
	return Array.isArray(r) ? r : r.rows;
}

/** The database's own clock: what compares with the times it stamps (`now()`), whatever this console's says. */
export async function databaseNow(): Promise<Date> {
	const [row] = await queryRows<{ now: Date | string }>(sql`select now() as now`);
	return new Date(row!.now);
}

export async function pingDatabase(): Promise<boolean> {
	try {
		await db().execute(sql`select 1`);
		return true;
	} catch {
		return false;
	}
}
