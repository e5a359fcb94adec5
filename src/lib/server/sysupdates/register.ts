import { registerFlow } from '$lib/server/engine';
import { registerStatusAlert, registerStatusPart } from '$lib/server/fleet/status';
import { scanFlow } from './scan';
import { systemUpdateAlerts, systemUpdateStatusParts } from './status';
import { updateFlow } from './update';

/** System Updates' part of the console: its scan and update flows, and its part of each node's status and its alerts. */
export function registerSystemUpdates(): void {
	registerFlow(scanFlow);
	registerFlow(updateFlow);
	for (const part of systemUpdateStatusParts) registerStatusPart(part);
	for (const alert of systemUpdateAlerts) registerStatusAlert(alert);
}
