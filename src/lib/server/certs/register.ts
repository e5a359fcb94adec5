import { registerFlow } from '$lib/server/engine';
import { registerStatusPart } from '$lib/server/fleet/status';
import { certRotateFlow } from './rotate';
import { certScanFlow } from './scan';
import { certStatusParts } from './status';

/** TLS certificates' part of the console: its flows and its part of each node's status. */
export function registerCertificates(): void {
	registerFlow(certScanFlow);
	registerFlow(certRotateFlow);
	for (const part of certStatusParts) registerStatusPart(part);
}
