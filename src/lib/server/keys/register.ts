import { registerFlow } from '$lib/server/engine';
import { keyCatchUpFlow, keyCleanupFlow, keyPhaseFlow } from './flow';

/** SSH key rotation's part of the console: its flows (the driver is a periodic job started with the console). */
export function registerKeys(): void {
	registerFlow(keyPhaseFlow);
	registerFlow(keyCatchUpFlow);
	registerFlow(keyCleanupFlow);
}
