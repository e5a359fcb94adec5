import { pruneOlderThan } from '$lib/server/db/prune';
import { pruneEngineRecords } from '$lib/server/engine';

/**
 * Prunes what grows without bound: events and task steps older than `days`, audit rows older than
 * `auditDays` (0 keeps them forever). A run's summary, its `runs` and `tasks` rows, stays whatever its age.
 * The engine prunes its own tables; this says when, and prunes the audit log.
 */
export async function pruneOldRecords(opts: {
	days: number;
	auditDays: number;
	batchSize?: number;
}): Promise<{ events: number; task_steps: number; audit_log: number }> {
	const batchSize = opts.batchSize ?? 5_000;
	const engine = opts.days > 0 ? await pruneEngineRecords(opts.days, batchSize) : { events: 0, task_steps: 0 };
	return {
		...engine,
		audit_log: opts.auditDays > 0 ? await pruneOlderThan('audit_log', 'at', opts.auditDays, batchSize) : 0
	};
}
