import path from 'node:path';
import { ensureFirstAdminFromEnv } from '$lib/server/auth/users';
import { config } from '$lib/server/config';
import { openDatabase, useDatabase, type DatabaseHandle } from '$lib/server/db';
import { log } from '$lib/server/log';

let started: Promise<DatabaseHandle> | undefined;

/** Opens the database, applies migrations and creates the first admin when asked to. Runs once. */
export function startConsole(): Promise<DatabaseHandle> {
	started ??= (async () => {
		const cfg = config();
		const handle = await openDatabase({
			url: cfg.databaseUrl,
			pgliteDir: path.join(cfg.dataDir, 'pglite'),
			migrationsDir: cfg.migrationsDir
		});
		useDatabase(handle);
		await ensureFirstAdminFromEnv(cfg.adminUser, cfg.adminPassword);
		log.info({ database: handle.kind, version: cfg.version }, 'console ready');
		const stop = async (signal: string) => {
			log.info({ signal }, 'shutting down');
			await handle.close();
			process.exit(0);
		};
		process.once('SIGTERM', stop);
		process.once('SIGINT', stop);
		return handle;
	})();
	return started;
}
