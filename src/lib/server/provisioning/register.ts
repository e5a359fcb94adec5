import { registerFlow } from '$lib/server/engine';
import { registerRoleUpdatePhase } from '$lib/server/codesync/flow';
import { provisionFlow } from './flow';
import { codeSyncPhase } from './code-sync';

/** Provisioning's part of the console: its flow, and its phases inside Code Sync's update of a role. */
export function registerProvisioning(): void {
	registerFlow(provisionFlow);
	registerRoleUpdatePhase(codeSyncPhase);
}
