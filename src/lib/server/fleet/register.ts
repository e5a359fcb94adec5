import { registerFlow, useNodeAccess } from '$lib/server/engine';
import { checkFlow } from './check-flow';
import { getNode } from './nodes';
import { sshTargetFor } from './targets';

/** The fleet's part of the console: how the engine reaches a node, and the `check` flow. */
export function registerFleet(): void {
	useNodeAccess({ node: getNode, target: (node, credential) => sshTargetFor(node, 0, credential) });
	registerFlow(checkFlow);
}
