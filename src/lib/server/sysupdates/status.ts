import { sql } from 'drizzle-orm';
import type { StatusAlert, StatusPart } from '$lib/server/fleet/status';

/** FAILED while the node's last system update failed (cleared by the next one that succeeds). */
export const systemUpdateStatusParts: StatusPart[] = [
	{
		status: 'FAILED',
		name: 'system-update-failed',
		precedence: 41,
		nodes: () => sql`(select node_id from sys_node_scans where update_error is not null)`
	}
];

/**
 * System Updates' alerts on each node's status (fleet/status.ts): security updates pending and a reboot
 * required, from the node's last scan.
 */
export const systemUpdateAlerts: StatusAlert[] = [
	{
		alert: 'security_updates',
		nodes: () => sql`(select node_id from sys_node_scans where security_count > 0)`
	},
	{
		alert: 'reboot_required',
		nodes: () => sql`(select node_id from sys_node_scans where reboot_required)`
	}
];
