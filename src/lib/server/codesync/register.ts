import { registerFlow } from '$lib/server/engine';
import { registerStatusPart } from '$lib/server/fleet/status';
import { registerSweepInspector } from '$lib/server/fleet/sweep';
import { codeSyncFlow } from './flow';
import { codeSyncStatusParts } from './status';
import { codeSyncInspector } from './sweep';

/** Code Sync's part of the console: its flow, its part of each node's status, and of the health sweep. */
export function registerCodeSync(): void {
	registerFlow(codeSyncFlow);
	for (const part of codeSyncStatusParts) registerStatusPart(part);
	registerSweepInspector('code-sync', codeSyncInspector);
}
