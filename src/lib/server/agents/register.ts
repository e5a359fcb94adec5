import { registerFlow } from '$lib/server/engine';
import { registerStatusNotes } from '$lib/server/fleet/status';
import { registerPullUpdates } from '$lib/server/rollouts/pull';
import { isPullNode } from './enrolment';
import { pullFlow } from './flow';
import { agentInstallFlow } from './install';
import { STEP_DEADLINE_SECONDS } from './jobs';
import { pullAgentNotes, waitingWhy } from './status';

/** Pull agents' part of the console: rollouts run a node with an enrolled agent through it (docs/pull-agent.md). */
export function registerAgents(): void {
	registerPullUpdates({
		handles: (node) => isPullNode(node.id),
		flow: (spec) => pullFlow(spec, STEP_DEADLINE_SECONDS),
		waitingWhy
	});
	registerStatusNotes(pullAgentNotes);
	registerFlow(agentInstallFlow);
}
