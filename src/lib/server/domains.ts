import { registerAgents } from '$lib/server/agents/register';
import { registerAppliances } from '$lib/server/appliances/register';
import { registerCertificates } from '$lib/server/certs/register';
import { registerCodeSync } from '$lib/server/codesync/register';
import { registerFleet } from '$lib/server/fleet/register';
import { registerKeys } from '$lib/server/keys/register';
import { registerNotify } from '$lib/server/notify/register';
import { registerProvisioning } from '$lib/server/provisioning/register';
import { registerReleases } from '$lib/server/releases/register';
import { registerRollouts } from '$lib/server/rollouts/register';
import { registerSystemUpdates } from '$lib/server/sysupdates/register';

/**
 * Every domain registers its flows and its parts of the fleet-wide views from its own folder; this is the one
 * place that knows them all. Call it before starting the engine (each flow kind gets its own queue).
 */
export function registerDomains(): void {
	registerFleet();
	registerCodeSync();
	registerReleases();
	registerRollouts();
	registerSystemUpdates();
	registerCertificates();
	registerNotify();
	registerProvisioning();
	registerKeys();
	registerAppliances();
	registerAgents();
}
