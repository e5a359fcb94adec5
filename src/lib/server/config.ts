import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { isTimeZone } from '$lib/schemas/system-updates';
import { parseCron } from '$lib/clock';

/**
 * The console's configuration, read once from the environment and validated so that a typo fails
 * loudly at start-up instead of surfacing later as odd behaviour.
 */
const envSchema = z
	.object({
		DATABASE_URL: z
			.string()
			.regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
			.optional(),
		FLOTILLA_DATA_DIR: z.string().min(1).default('./data'),
		FLOTILLA_ADMIN_USER: z.string().min(1).default('admin'),
		FLOTILLA_ADMIN_PASSWORD: z.string().optional(),
		FLOTILLA_SECRET_KEY: z.string().optional(),
		FLOTILLA_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
		FLOTILLA_MIGRATIONS_DIR: z.string().min(1).default('./drizzle'),
		FLOTILLA_DEMO: z.enum(['0', '1'], { error: 'must be 0 or 1' }).default('0'),
		FLOTILLA_ENGINE_CONCURRENCY: z.coerce.number().int('must be a whole number').min(1).max(2_000).default(50),
		FLOTILLA_TASK_LEASE_SECONDS: z.coerce.number().int('must be a whole number').min(10).max(600).default(30),
		FLOTILLA_SHUTDOWN_GRACE_SECONDS: z.coerce.number().int('must be a whole number').min(0).max(3600).default(30),
		FLOTILLA_HEALTH_SWEEP_SECONDS: z.coerce.number().int('must be a whole number').min(0).max(86_400).default(60),
		FLOTILLA_HEALTH_SWEEP_CONCURRENCY: z.coerce.number().int('must be a whole number').min(1).max(500).default(20),
		FLOTILLA_SSH_WARM_SECONDS: z.coerce.number().int('must be a whole number').min(0).max(3600).default(60),
		FLOTILLA_SSH_WARM_MAX: z.coerce.number().int('must be a whole number').min(0).max(10_000).default(200),
		FLOTILLA_RETENTION_DAYS: z.coerce.number().int('must be a whole number').min(0).max(36_500).default(90),
		FLOTILLA_AUDIT_RETENTION_DAYS: z.coerce.number().int('must be a whole number').min(0).max(36_500).default(365),
		FLOTILLA_SYSTEM_SCAN_CRON: z
			.string()
			.refine((v) => v === 'off' || cronProblem(v) === null, {
				error: (i) => cronProblem(String(i.input)) ?? 'invalid'
			})
			.default('0 2 * * *'),
		FLOTILLA_SYSTEM_SOAK_DAYS: z.coerce.number().int('must be a whole number').min(0).max(365).default(0),
		FLOTILLA_SYSTEM_SOAK_SECURITY: z.enum(['exempt', 'gate'], { error: 'must be exempt or gate' }).default('exempt'),
		FLOTILLA_SYSTEM_SCAN_TZ: z
			.string()
			.refine(isTimeZone, 'must be an IANA time zone, e.g. Europe/Berlin')
			.default('UTC'),
		/** Ed25519 public keys that sign releases: PEM blocks, or base64 (raw 32 bytes or SPKI), comma-separated. */
		FLOTILLA_RELEASE_PUBLIC_KEYS: z.string().optional(),
		/** A file holding such keys (PEM), for keys too long for an environment variable. */
		FLOTILLA_RELEASE_PUBLIC_KEYS_FILE: z.string().optional(),
		/** The shared secret of HMAC-SHA256 release signatures (the signer's RELEASE_SIGNING_SECRET). */
		FLOTILLA_RELEASE_SIGNING_SECRET: z.string().min(16, 'must be at least 16 characters').optional(),
		/** Rollback protection: no rollout, and no fleet rollback, may take nodes to a release below this version. */
		FLOTILLA_RELEASE_MIN_VERSION: z
			.string()
			.regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/, 'must be a semantic version such as 1.4.0')
			.optional(),
		/** The largest appliance image the console stores (docs/appliances.md). */
		FLOTILLA_IMAGE_MAX_BYTES: z
			.string()
			.regex(/^\d+[KMG]?$/i, 'must be a byte count such as 512M or 4G')
			.default('4G'),
		/** Seconds between turns of the rollout driver (0: none on this console). */
		FLOTILLA_ROLLOUT_TICK_SECONDS: z.coerce.number().int('must be a whole number').min(0).max(3600).default(5),
		/** Seconds between checks that start the next stage of a staged system update (0: none on this console). */
		FLOTILLA_SYSTEM_STAGE_TICK_SECONDS: z.coerce.number().int('must be a whole number').min(0).max(3600).default(60),
		FLOTILLA_CERT_SCAN_SECONDS: z.coerce
			.number()
			.int('must be a whole number')
			.min(0)
			.max(31 * 86_400)
			.default(86_400),
		FLOTILLA_CERT_WARN_DAYS: z.coerce.number().int('must be a whole number').min(1).max(3650).default(30),
		FLOTILLA_CERT_CRITICAL_DAYS: z.coerce.number().int('must be a whole number').min(0).max(3650).default(7),
		FLOTILLA_CERT_AUTO_RENEW: z.enum(['0', '1'], { error: 'must be 0 or 1' }).default('0'),
		// adapter-node's own variable, the URL browsers use; read here too for the console's links to itself.
		ORIGIN: z
			.string()
			.refine(isOrigin, 'must be an http:// or https:// URL with no path, e.g. https://flotilla.example.com')
			.optional(),
		// adapter-node's own variable: it cuts request bodies off at this size; read here so refusals can name it.
		BODY_SIZE_LIMIT: z
			.string()
			.regex(/^(\d+[KMG]?|Infinity)$/i, 'must be a byte count such as 512K, 2M or Infinity')
			.default('512K')
	})
	.refine((e) => e.FLOTILLA_CERT_CRITICAL_DAYS <= e.FLOTILLA_CERT_WARN_DAYS, {
		message: 'must not be more than FLOTILLA_CERT_WARN_DAYS',
		path: ['FLOTILLA_CERT_CRITICAL_DAYS']
	});

function isOrigin(value: string): boolean {
	try {
		const url = new URL(value);
		return ['http:', 'https:'].includes(url.protocol) && url.href === `${url.origin}/`;
	} catch {
		return false;
	}
}

function cronProblem(expression: string): string | null {
	try {
		parseCron(expression);
		return null;
	} catch (err) {
		return `must be a five-field cron expression or off (${(err as Error).message})`;
	}
}

/** What the rest of the code reads: derived from the variables above, so the two cannot drift apart. */
const configSchema = envSchema.transform((e) => ({
	databaseUrl: e.DATABASE_URL,
	dataDir: path.resolve(e.FLOTILLA_DATA_DIR),
	adminUser: e.FLOTILLA_ADMIN_USER,
	adminPassword: e.FLOTILLA_ADMIN_PASSWORD,
	secretKey: e.FLOTILLA_SECRET_KEY,
	logLevel: e.FLOTILLA_LOG_LEVEL,
	migrationsDir: path.resolve(e.FLOTILLA_MIGRATIONS_DIR),
	/** Start the simulated demo fleet (the quick start sets this). */
	demo: e.FLOTILLA_DEMO === '1',
	/** Tasks this console executes at once, across all runs. */
	engineConcurrency: e.FLOTILLA_ENGINE_CONCURRENCY,
	/** How long a task's claim holds without renewal before another instance recovers it. */
	taskLeaseMs: e.FLOTILLA_TASK_LEASE_SECONDS * 1000,
	/** On SIGTERM, how long running steps may finish before they are interrupted and left for recovery. */
	shutdownGraceMs: e.FLOTILLA_SHUTDOWN_GRACE_SECONDS * 1000,
	/** Seconds between health sweeps (0: none), and nodes swept at once. */
	healthSweepSeconds: e.FLOTILLA_HEALTH_SWEEP_SECONDS,
	healthSweepConcurrency: e.FLOTILLA_HEALTH_SWEEP_CONCURRENCY,
	/** Idle SSH sessions kept open after a task or check (ssh/warm.ts): how long, and how many at most. */
	sshWarm: { idleMs: e.FLOTILLA_SSH_WARM_SECONDS * 1000, max: e.FLOTILLA_SSH_WARM_MAX },
	/** Days events and task steps are kept (0: forever); runs and tasks are kept whatever their age. */
	retentionDays: e.FLOTILLA_RETENTION_DAYS,
	/** Days audit rows are kept (0: forever). */
	auditRetentionDays: e.FLOTILLA_AUDIT_RETENTION_DAYS,
	/** When the fleet is scanned for system updates (cron in `systemScanTimeZone`; null: never on its own). */
	systemScanCron: e.FLOTILLA_SYSTEM_SCAN_CRON === 'off' ? null : e.FLOTILLA_SYSTEM_SCAN_CRON,
	systemScanTimeZone: e.FLOTILLA_SYSTEM_SCAN_TZ,
	/** Automatic updates take only versions the fleet has known this many days; security ones at once unless gated. */
	systemSoak: { days: e.FLOTILLA_SYSTEM_SOAK_DAYS, securityExempt: e.FLOTILLA_SYSTEM_SOAK_SECURITY === 'exempt' },
	releasePublicKeys: e.FLOTILLA_RELEASE_PUBLIC_KEYS,
	releasePublicKeysFile: e.FLOTILLA_RELEASE_PUBLIC_KEYS_FILE,
	releaseSigningSecret: e.FLOTILLA_RELEASE_SIGNING_SECRET,
	releaseMinVersion: e.FLOTILLA_RELEASE_MIN_VERSION,
	rolloutTickSeconds: e.FLOTILLA_ROLLOUT_TICK_SECONDS,
	systemStageTickSeconds: e.FLOTILLA_SYSTEM_STAGE_TICK_SECONDS,
	imageMaxBytes: parseByteCount(e.FLOTILLA_IMAGE_MAX_BYTES),
	/** The largest request body the server reads, in bytes. */
	bodyLimitBytes: parseByteCount(e.BODY_SIZE_LIMIT),
	/** Seconds between scans of every node's certificates (0: none; docs/certificates.md). */
	certScanSeconds: e.FLOTILLA_CERT_SCAN_SECONDS,
	/** Certificates with fewer days left are a warning, with fewer than `critical` critical. */
	certThresholds: { warnDays: e.FLOTILLA_CERT_WARN_DAYS, criticalDays: e.FLOTILLA_CERT_CRITICAL_DAYS },
	/** Rotate role certificates at two thirds of their lifetime, spread over the next sixth (docs/certificates.md). */
	certAutoRenew: e.FLOTILLA_CERT_AUTO_RENEW === '1',
	/** The console's public origin (ORIGIN, no trailing slash), for links to itself; null when unset. */
	publicOrigin: e.ORIGIN ? new URL(e.ORIGIN).origin : null,
	version: readVersion()
}));

export type Config = z.infer<typeof configSchema>;

/** Reads a byte count the way adapter-node does, so the limit named in a refusal is the one it enforces. */
function parseByteCount(value: string): number {
	const multiplier = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[value.at(-1)!.toUpperCase()];
	return multiplier ? Number(value.slice(0, -1)) * multiplier : Number(value);
}

function readVersion(): string {
	try {
		const pkg = JSON.parse(readFileSync(path.resolve('package.json'), 'utf8')) as { version?: string };
		return pkg.version ?? 'unknown';
	} catch {
		return 'unknown';
	}
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
	// An empty variable means "unset": shells and .env files often leave `DATABASE_URL=` behind.
	const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
	const parsed = configSchema.safeParse(present);
	if (!parsed.success) {
		const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
		throw new Error(`Invalid configuration: ${problems}`);
	}
	return parsed.data;
}

let current: Config | undefined;

export function config(): Config {
	current ??= loadConfig();
	return current;
}
