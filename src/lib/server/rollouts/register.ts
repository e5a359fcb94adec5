import { registerFlow } from '$lib/server/engine';
import { rolloutRevertFlow, rolloutStageFlow } from './flow';

/** Rollouts' part of the console: the stage and fleet-rollback flows (the driver is a periodic job, startup.ts). */
export function registerRollouts(): void {
	registerFlow(rolloutStageFlow);
	registerFlow(rolloutRevertFlow);
}
