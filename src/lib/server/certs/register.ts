import { registerFlow } from '$lib/server/engine';
import { registerStatusPart } from '$lib/server/fleet/status';
import { certScanFlow } from './scan';
import { certStatusParts } from './status';

/** TLS certificates' part of the console: its flows and its part of each node's status. */
export function registerCertificates(): void {
	registerFlow(certScanFlow);
	for (const part of certStatusParts) registerStatusPart(part);
}
