/**
 * The states a run or a task goes through and ends in: the one list, for the browser, the database schema and
 * the engine alike (this module is safe to import in the browser).
 */
export const terminalTaskStates = ['succeeded', 'failed', 'rolled_back', 'cancelled', 'skipped'] as const;
export const terminalRunStates = ['succeeded', 'failed', 'cancelled'] as const;

/** Every state, in the order a run or a task goes through them (the filters and counts of the run pages). */
export const taskStates = ['queued', 'running', ...terminalTaskStates] as const;
export const runStates = ['queued', 'running', 'paused', ...terminalRunStates] as const;

/** A step's states; `do` runs forward, `undo` rolls back, `inspect` reconciles after a crash, `verify` checks health after a rollback. */
export const stepStates = ['running', 'succeeded', 'failed', 'cancelled'] as const;
export const stepPhases = ['do', 'undo', 'inspect', 'verify'] as const;

/** A rollout's states (docs/releases.md, "Rollouts"). */
export const rolloutStates = [
	'scheduled',
	'running',
	'waiting_approval',
	'paused',
	'rolling_back',
	'completed',
	'cancelled',
	'rolled_back',
	'failed'
] as const;

/** An appliance image's upload, and an appliance's A/B update (docs/appliances.md, "States"). */
/** `fetching`: the console downloads it from its URL (a durable job); `failed`: that gave up, saying why. */
export const applianceImageStates = ['receiving', 'fetching', 'complete', 'failed'] as const;
export const applianceUpdateStates = [
	'pending',
	'uploading',
	'verifying',
	'ready',
	'rebooting',
	'verifying_health',
	'succeeded',
	'failed',
	'rolled_back',
	'skipped',
	'cancelled'
] as const;

export type TerminalTaskState = (typeof terminalTaskStates)[number];

const taskEnded = new Set<string>(terminalTaskStates);
const runEnded = new Set<string>(terminalRunStates);

/** Whether a task is over (it will not run again unless retried as a new attempt). */
export const isTaskEnded = (state: string) => taskEnded.has(state);
/** Whether a run is over: not queued, running or paused. */
export const isRunEnded = (state: string) => runEnded.has(state);

/** A pull agent's job (docs/pull-agent.md). */
export const agentJobStates = ['pending', 'running', 'succeeded', 'rolled_back', 'failed', 'abandoned'] as const;

/**
 * The state a rollout's stage shows (its badge). A stage is `running` from its start until the rollout moves on,
 * so a paused rollout would show its stage running after its last node finished: the stage is paused then. A stage
 * left `running` when the rollout ended (cancelled, failed, rolled back) shows how the rollout ended.
 */
export function stageShownState(
	rollout: (typeof rolloutStates)[number],
	stage: { state: 'pending' | 'running' | 'done'; counts: { running: number; queued: number } | null }
): string {
	if (stage.state === 'done') return 'succeeded';
	if (stage.state === 'pending') return 'queued';
	if (['cancelled', 'failed', 'rolled_back'].includes(rollout)) return rollout;
	const busy = stage.counts ? stage.counts.running + stage.counts.queued : 0;
	if (rollout === 'paused' && !busy) return 'paused';
	return 'running';
}

/** A key rotation's states, phases and per-node states (docs/ssh-key-rotation.md). */
export const keyRotationStates = ['running', 'open', 'completed', 'aborted'] as const;
/** `cleanup`: an aborted rotation taking its own lines off the nodes where K1 or K3 put them. */
export const keyRotationPhases = ['survey', 'K1', 'K2', 'K3', 'K4', 'K5', 'K6', 'cleanup', 'done'] as const;
export const keyRotationNodeStates = ['active', 'deferred', 'done', 'failed', 'cleanup', 'cleaned'] as const;
