import path from 'node:path';
import { deleteExpiredSessions } from '$lib/server/auth/session';
import { ensureFirstAdminFromEnv } from '$lib/server/auth/users';
import { loadSecretKey } from '$lib/server/crypto/secret-key';
import { config } from '$lib/server/config';
import { openDatabase, useDatabase, type DatabaseHandle } from '$lib/server/db';
import { log } from '$lib/server/log';

let started: Promise<DatabaseHandle> | undefined;
let masterKey: Buffer | undefined;

/** The key that seals secrets at rest; loaded (or generated) at start-up so a bad key fails early. */
export function secretKey(): Buffer {
	if (!masterKey) throw new Error('The console has not started: no secret key loaded');
	return masterKey;
}

const HOUR_MS = 60 * 60 * 1000;

/** Loads the master key, opens the database, applies migrations, creates the first admin if asked. Runs once. */
export function startConsole(): Promise<DatabaseHandle> {
	started ??= (async () => {
		const cfg = config();
		masterKey = loadSecretKey({ envKey: cfg.secretKey, dataDir: cfg.dataDir });
		if (!cfg.secretKey && cfg.databaseUrl) {
			log.warn(
				'FLOTILLA_SECRET_KEY is not set: using the key file in the data folder; every console sharing this database needs the same key'
			);
		}
		const handle = await openDatabase({
			url: cfg.databaseUrl,
			pgliteDir: path.join(cfg.dataDir, 'pglite'),
			migrationsDir: cfg.migrationsDir
		});
		useDatabase(handle);
		await ensureFirstAdminFromEnv(cfg.adminUser, cfg.adminPassword);
		await deleteExpiredSessions();
		setInterval(
			() => deleteExpiredSessions().catch((err) => log.warn({ err }, 'expired session sweep failed')),
			HOUR_MS
		).unref();
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
