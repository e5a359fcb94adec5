import { sql } from 'drizzle-orm';
import { config } from '$lib/server/config';
import type { StatusPart } from '$lib/server/fleet/status';

/**
 * Certificates' parts of the fleet status (fleet/status.ts), the inventory's levels (docs/certificates.md):
 * CERT_EXPIRED when a certificate in the node's inventory has expired (an outage, or one about to happen:
 * ranked just after UNREACHABLE); CERT_CRITICAL when one expires within the critical threshold
 * (FLOTILLA_CERT_CRITICAL_DAYS: days left to act, ranked before a failed update); CERT_EXPIRING within the
 * warning threshold (FLOTILLA_CERT_WARN_DAYS), ranked after FAILED and before OUTDATED.
 */
export const certStatusParts: StatusPart[] = [
	{
		status: 'CERT_EXPIRED',
		precedence: 35,
		nodes: () => sql`(select distinct node_id from certificates where not_after <= now())`
	},
	{ status: 'CERT_CRITICAL', precedence: 38, nodes: () => expiringWithin(config().certThresholds.criticalDays) },
	{ status: 'CERT_EXPIRING', precedence: 45, nodes: () => expiringWithin(config().certThresholds.warnDays) }
];

const expiringWithin = (days: number) =>
	sql`(select distinct node_id from certificates where not_after < now() + make_interval(days => ${days}::int))`;
