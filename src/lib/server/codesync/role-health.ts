import { inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { codeRoles } from '$lib/server/db/schema';
import { waitHealthy, type Exec } from './health';

/**
 * Code Sync's health checks for other domains: after a system update or a reboot, each of the node's roles that
 * Code Sync defines must pass its health check (docs/code-sync.md, "Roles"), exactly as after a code update.
 * Roles without a definition have no check and are left out; throws the first role that stays unhealthy.
 */
export async function verifyRolesHealthy(
	exec: Exec,
	roleNames: string[],
	signal: AbortSignal,
	log: (line: string) => void
): Promise<string[]> {
	if (!roleNames.length) return [];
	const roles = await db().select().from(codeRoles).where(inArray(codeRoles.name, roleNames));
	roles.sort((a, b) => a.sortOrder - b.sortOrder || a.name.localeCompare(b.name));
	for (const role of roles) await waitHealthy(exec, role, signal, log);
	return roles.map((r) => r.name);
}
