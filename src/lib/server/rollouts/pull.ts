import type { Node } from '$lib/server/db/schema';
import type { Flow, Step, StepContext, TaskEnd } from '$lib/server/engine';

/**
 * Nodes whose agent pulls their updates (docs/pull-agent.md) run a rollout's tasks through the flow the agents'
 * domain builds and registers here, so that rollouts import nothing of it (the arrow points from agents to here).
 */

export interface PullJob {
	/** What the agent is told it runs (the release's version). */
	release: string;
	/** Per role, the commit to run. */
	targets: Record<string, string>;
}

export interface PullFlowSpec<P> {
	kind: string;
	/** Steps that run on the console before the agent is asked (a maintenance window's wait). */
	first?: Step<P>[];
	job(ctx: StepContext<P>): Promise<PullJob>;
	finished?(end: TaskEnd<P>): Promise<void>;
}

/** The pull flow's step that waits for the agent to take its job (its next poll). */
export const CLAIM_STEP = 'agent';

export interface PullUpdates {
	handles(node: Node): Promise<boolean>;
	flow<P>(spec: PullFlowSpec<P>): Flow<P>;
	/** Why each of these nodes, waiting in the claim step, still waits: when its agent last polled, or never. */
	waitingWhy(nodeIds: string[]): Promise<Map<string, string>>;
}

let pull: PullUpdates | undefined;

export function registerPullUpdates(p: PullUpdates): void {
	pull = p;
}

/** Whether a node's updates go through its agent: the console never connects to it for them. */
export async function updatesPulled(node: Node): Promise<boolean> {
	return pull ? pull.handles(node) : false;
}

/** A flow's `variant`: the pull flow for nodes with an agent, built once per flow kind. */
export function pullVariant<P>(spec: PullFlowSpec<P>): (node: Node) => Promise<Flow<P> | undefined> {
	let flow: Flow<P> | undefined;
	return async (node) => {
		if (!pull || !(await updatesPulled(node))) return undefined;
		return (flow ??= pull.flow(spec));
	};
}

/** For a stage in progress (docs/releases.md): why these pull nodes still wait for their agents. */
export async function pullWaitingWhy(nodeIds: string[]): Promise<Map<string, string>> {
	return pull && nodeIds.length ? pull.waitingWhy(nodeIds) : new Map();
}
