import type { RoleUpdatePhase } from '$lib/server/codesync/flow';
import { findDefinition } from './definitions';
import { installServices, writeSecrets } from './phases';

/**
 * Provisioning's secrets and services phases inside Code Sync's update (docs/provisioning.md, "Updates"): the
 * env file and unit files follow the role's definition; Code Sync then restarts and verifies as always. Clean
 * and system dependencies belong to a provisioning only.
 */
export const codeSyncPhase: RoleUpdatePhase = {
	name: 'provisioning',
	async apply(ctx, role) {
		const def = await findDefinition(role.name);
		if (!def) return;
		await writeSecrets(ctx, role, def);
		if (def.unitTemplates.length) await installServices(ctx, role, def, { restart: false, start: false });
	}
};
