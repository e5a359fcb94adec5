import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RunState, Task } from '$lib/server/db/schema';
import { warmConnectionCount } from '$lib/server/ssh/warm';

/** One registry for the console, served at /metrics. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'flotilla_process_' });

const runsTotal = new Counter({
	name: 'flotilla_runs_total',
	help: 'Runs that ended, by kind and outcome',
	labelNames: ['kind', 'outcome'],
	registers: [registry]
});
const tasksTotal = new Counter({
	name: 'flotilla_tasks_total',
	help: 'Tasks that ended, by flow kind and outcome',
	labelNames: ['kind', 'outcome'],
	registers: [registry]
});
const stepSeconds = new Histogram({
	name: 'flotilla_step_duration_seconds',
	help: 'How long steps took, by flow kind, step, phase and outcome',
	labelNames: ['kind', 'step', 'phase', 'outcome'],
	buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
	registers: [registry]
});
const rollbacks = new Counter({
	name: 'flotilla_rollbacks_total',
	help: 'Rollbacks the engine started, by flow kind',
	labelNames: ['kind'],
	registers: [registry]
});
const sshActive = new Gauge({
	name: 'flotilla_ssh_connections_active',
	help: 'SSH connections the engine holds open now',
	registers: [registry]
});
new Gauge({
	name: 'flotilla_ssh_connections_warm',
	help: 'Idle SSH sessions kept open for the next task on their node',
	registers: [registry],
	collect() {
		this.set(warmConnectionCount());
	}
});

// Names without the flotilla_ prefix, as existing appliance-update dashboards query them: kept unchanged so those
// dashboards keep working (docs/api.md, "Metrics").
const updateApplySeconds = new Histogram({
	name: 'update_apply_seconds',
	help: 'Time from a task starting to its update being applied and verified (succeeded tasks of flows that change nodes)',
	buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800],
	registers: [registry]
});
// Counted where tasks end, not where rollbacks start: a rollback that is started by a cancel, or that fails, does
// not end rolled_back. A task ends rolled_back only when an undo ran (docs/development.md).
const updateRollbackCount = new Counter({
	name: 'update_rollback_count',
	help: 'Tasks of flows that change nodes that ended rolled back',
	registers: [registry]
});
let succeeded = 0;
let ended = 0;
new Gauge({
	name: 'update_success_rate',
	help: 'Percentage of update tasks (flows that change nodes) that succeeded, of those that ended since the console started; 100 before any ended',
	registers: [registry],
	collect() {
		this.set(ended ? (succeeded * 100) / ended : 100);
	}
});

let depthSource: () => Promise<number> = async () => 0;
new Gauge({
	name: 'flotilla_queue_depth',
	help: 'Jobs waiting in the engine queues',
	registers: [registry],
	async collect() {
		this.set(await depthSource());
	}
});

export function useQueueDepth(source: () => Promise<number>): void {
	depthSource = source;
}

export function runFinished(kind: string, state: RunState): void {
	runsTotal.inc({ kind, outcome: state });
}

/**
 * A task this instance executed ended. `isUpdate`: its flow changes nodes, so it counts towards the
 * update_* metrics; a read-only check of an unreachable node is not a failed update.
 */
export function taskFinished(task: Task, kind: string, isUpdate: boolean): void {
	tasksTotal.inc({ kind, outcome: task.state });
	if (!isUpdate || task.state === 'skipped' || task.state === 'cancelled') return;
	ended++;
	if (task.state === 'rolled_back') updateRollbackCount.inc();
	if (task.state === 'succeeded') {
		succeeded++;
		if (task.startedAt && task.endedAt) {
			updateApplySeconds.observe((task.endedAt.getTime() - task.startedAt.getTime()) / 1000);
		}
	}
}

/** Queued tasks ended without running (a cancel, a failed critical phase). */
export function tasksEndedUnrun(kind: string, outcome: 'cancelled' | 'skipped', count: number): void {
	if (count) tasksTotal.inc({ kind, outcome }, count);
}

export function stepFinished(kind: string, step: string, phase: string, outcome: string, seconds: number): void {
	stepSeconds.observe({ kind, step, phase, outcome }, seconds);
}

/** A rollback started (whatever its task's end: rolled back, cancelled, or failed when the rollback failed). */
export function rollbackPerformed(kind: string): void {
	rollbacks.inc({ kind });
}

export function sshConnectionsChanged(delta: number): void {
	sshActive.inc(delta);
}
