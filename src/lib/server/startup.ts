import path from 'node:path';
import { deleteExpiredSessions } from '$lib/server/auth/session';
import { ensureFirstAdminFromEnv } from '$lib/server/auth/users';
import { useMasterKey } from '$lib/server/crypto/master-key';
import { runAutoUpdates } from '$lib/server/codesync/auto-update';
import { driveRollouts } from '$lib/server/rollouts/driver';
import { driveKeyRotations } from '$lib/server/keys/driver';
import { runAutoRenew } from '$lib/server/certs/renew';
import { runScheduledScan, startScan } from '$lib/server/certs/scan';
import { systemActor } from '$lib/server/audit';
import { pruneOldRecords } from '$lib/server/retention';
import { startDemoFleet } from '$lib/server/sim/demo-fleet';
import { loadSecretKey } from '$lib/server/crypto/secret-key';
import { config } from '$lib/server/config';
import { openDatabase, useDatabase, type DatabaseHandle } from '$lib/server/db';
import { startImageFetches } from '$lib/server/appliances/image-fetch';
import { startEngine, stopEngine } from '$lib/server/engine';
import { registerDomains } from '$lib/server/domains';
import { startNotify, stopNotify } from '$lib/server/notify/register';
import { schedulePeriodic, stopPeriodic } from '$lib/server/engine';
import { runHealthSweep } from '$lib/server/fleet/sweep';
import { runScheduledSystemUpdates } from '$lib/server/sysupdates/schedule';
import { driveStagedUpdates } from '$lib/server/sysupdates/staged';
import { log, loggableError } from '$lib/server/log';
import { nativeCiphers } from '$lib/server/ssh/connection';
import { configureWarmConnections } from '$lib/server/ssh/warm';

let started: Promise<DatabaseHandle> | undefined;

const HOUR_SECONDS = 60 * 60;
/** A phase of a key rotation starts at most this long after the one before it ended on every node. */
const KEY_ROTATION_TICK_SECONDS = 5;

/**
 * Loads (or creates) the master key, opens the database, applies migrations, creates the first admin if
 * asked to. Runs once; anything wrong here stops the console with a message that says what to fix.
 */
export function startConsole(): Promise<DatabaseHandle> {
	started ??= (async () => {
		const cfg = config();
		useMasterKey(loadSecretKey({ envKey: cfg.secretKey, dataDir: cfg.dataDir }));
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
		registerDomains();
		configureWarmConnections(cfg.sshWarm);
		await startEngine({
			concurrency: cfg.engineConcurrency,
			leaseMs: cfg.taskLeaseMs,
			sweepMs: Math.min(5_000, cfg.taskLeaseMs),
			shutdownGraceMs: cfg.shutdownGraceMs
		});
		const demo = cfg.demo ? await startDemoFleet(cfg.dataDir) : undefined;
		// The quick start opens on a certificate inventory: the demo's nodes are scanned once their first check is done.
		void demo?.checked
			.then(() => startScan(systemActor))
			.catch((err: unknown) => log.warn({ err: loggableError(err) }, 'demo certificate scan failed'));
		// Shared by every console: each turn runs on one of them (engine/runtime.ts).
		await schedulePeriodic('health-sweep', cfg.healthSweepSeconds, () => runHealthSweep(cfg.healthSweepConcurrency));
		await schedulePeriodic('auto-update', 60, runAutoUpdates);
		// Rollouts move from their rows in the database: a restarted console carries on at the next turn.
		await schedulePeriodic('rollouts', cfg.rolloutTickSeconds, driveRollouts);
		// Key rotations move from their rows too: each turn ends a phase whose run is over and starts the next.
		await schedulePeriodic('key-rotations', KEY_ROTATION_TICK_SECONDS, driveKeyRotations);
		await schedulePeriodic('system-updates', 60, () =>
			runScheduledSystemUpdates({ cron: cfg.systemScanCron, timeZone: cfg.systemScanTimeZone, soak: cfg.systemSoak })
		);
		// Staged system updates wait out their soak in the database: each turn starts a stage whose wait is over.
		await schedulePeriodic('system-update-stages', cfg.systemStageTickSeconds, () => driveStagedUpdates());
		if (cfg.certAutoRenew) await schedulePeriodic('cert-renew', HOUR_SECONDS, () => runAutoRenew());
		await schedulePeriodic('cert-scan', cfg.certScanSeconds, runScheduledScan);
		await schedulePeriodic('expired-sessions', HOUR_SECONDS, async () => {
			await deleteExpiredSessions();
			return {};
		});
		await schedulePeriodic('retention', HOUR_SECONDS, () =>
			pruneOldRecords({ days: cfg.retentionDays, auditDays: cfg.auditRetentionDays })
		);
		// Links in notifications point at the address browsers use (adapter-node's ORIGIN).
		await startNotify({ consoleUrl: cfg.publicOrigin ?? '' });
		// Appliance images declared with a URL: fetched by whichever console takes the job (appliances/image-fetch.ts).
		await startImageFetches();
		if (!nativeCiphers()) {
			log.warn(
				"ssh2's native crypto binding did not load: SSH uses slower JavaScript ciphers (run scripts/bootstrap.sh)"
			);
		}
		log.info({ database: handle.kind, version: cfg.version }, 'console ready');
		// adapter-node drains in-flight requests on SIGTERM/SIGINT, then emits this: only then close the database.
		process.once('sveltekit:shutdown', async (reason) => {
			log.info({ reason }, 'shutting down');
			// A turn this console runs ends before the engine stops (its events are still written); others take the next.
			await stopPeriodic().catch((err) => log.warn({ err: loggableError(err) }, 'periodic jobs stop failed'));
			await stopNotify().catch((err) => log.warn({ err: loggableError(err) }, 'notifications stop failed'));
			await stopEngine().catch((err) => log.warn({ err: loggableError(err) }, 'engine stop failed'));
			// The demo fleet's listening sockets would otherwise keep the process alive after SIGTERM.
			await demo?.stop();
			await handle.close();
		});
		return handle;
	})();
	return started;
}
