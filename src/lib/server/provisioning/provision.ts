import { unixUserSchema } from '$lib/schemas/remote';
import { provisioningPhases, type ProvisionInput } from '$lib/schemas/provisioning';
import { recordAudit, type Actor } from '$lib/server/audit';
import { assertRolesExist } from '$lib/server/codesync/roles';
import { createRun } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { findDefinition, serviceUserOf } from './definitions';
import { provisionFlow } from './flow';

/**
 * `POST /api/nodes/{id}/provision` (docs/provisioning.md): one run, one task, the phases asked for (all six by
 * default). Everything that can be refused is refused here, before anything reaches the node.
 */
export async function startProvisioning(
	actor: Actor,
	nodeId: string,
	input: ProvisionInput
): Promise<{ runId: string }> {
	const node = await getNode(nodeId);
	const [role] = await assertRolesExist([input.role], 'role');
	if (node.hostKeyStatus !== 'pinned') {
		throw new ServiceError('validation_failed', `${node.name} has no pinned host key`, {
			node: 'has no pinned host key: check the node and accept its key first'
		});
	}
	const phases = input.phases ?? [...provisioningPhases];
	const def = await findDefinition(role!.name);
	const user = serviceUserOf({ role: role!.name, serviceUser: def?.serviceUser ?? null });
	if (phases.includes('secrets') && !unixUserSchema.safeParse(user).success) {
		throw new ServiceError('validation_failed', `The role's name ${role!.name} is not a valid account name`, {
			role: 'its name is not a Unix account name: set a service user in its provisioning'
		});
	}
	if (phases.includes('deploy') && !role!.latestCommit) {
		throw new ServiceError('validation_failed', `The role ${role!.name} has no known commit to deploy`, {
			role: 'has no known commit yet: notify one (POST /api/code-source/notify) or pin one'
		});
	}
	const run = await createRun(actor, {
		kind: provisionFlow.kind,
		title: `Provision ${node.name} as ${role!.name}`,
		nodeIds: [node.id],
		params: { role: role!.name, phases, commit: role!.latestCommit },
		scope: { nodes: [node.id], roles: [role!.name] },
		exclusive: true
	});
	await recordAudit(actor, {
		action: 'node.provision',
		targetType: 'node',
		targetId: node.id,
		details: { node: node.name, role: role!.name, phases, run_id: run.id }
	});
	return { runId: run.id };
}
