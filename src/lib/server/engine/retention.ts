import { pruneOlderThan } from '$lib/server/db/prune';

/** The engine's records older than `days`: events and task steps. A run's summary (runs, tasks) stays. */
export async function pruneEngineRecords(
	days: number,
	batchSize: number
): Promise<{ events: number; task_steps: number }> {
	return {
		events: await pruneOlderThan('events', 'at', days, batchSize),
		task_steps: await pruneOlderThan('task_steps', 'started_at', days, batchSize)
	};
}
