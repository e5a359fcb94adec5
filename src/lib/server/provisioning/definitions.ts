import { eq } from 'drizzle-orm';
import { secretsUsed, type ProvisioningDefinitionInput } from '$lib/schemas/provisioning';
import { recordAudit, type Actor } from '$lib/server/audit';
import { getRole } from '$lib/server/codesync/roles';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { db } from '$lib/server/db';
import { nodeProvisioning, roleProvisioning, type RoleProvisioning } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';

/**
 * What a role needs on a fresh node beside its code (docs/provisioning.md, "Defining a role"). Secret values are
 * sealed here, on the way in, and opened only to render the env file for a node: no read, log, event or audit
 * row ever carries one.
 */

/** Authenticated with the sealed value, so a value copied onto another role or name does not open there. */
const secretContext = (role: string, name: string) => `role-secret:${role}:${name}`;

export async function findDefinition(role: string): Promise<RoleProvisioning | null> {
	const [row] = await db().select().from(roleProvisioning).where(eq(roleProvisioning.role, role));
	return row ?? null;
}

/** The role's secrets in clear, for rendering only. */
export function openSecrets(def: RoleProvisioning): Record<string, string> {
	const key = masterKey();
	return Object.fromEntries(
		Object.entries(def.secrets).map(([name, sealed]) => [name, openSecret(key, sealed, secretContext(def.role, name))])
	);
}

/**
 * Creates or changes a role's definition; absent fields stay as they are, a secret set to null is removed.
 * The result must hold together: every secret the env template names exists.
 */
export async function saveDefinition(
	actor: Actor,
	roleName: string,
	input: ProvisioningDefinitionInput
): Promise<RoleProvisioning> {
	const role = await getRole(roleName);
	const current = await findDefinition(role.name);
	const key = masterKey();
	const secrets = { ...(current?.secrets ?? {}) };
	for (const [name, value] of Object.entries(input.secrets ?? {})) {
		if (value === null) delete secrets[name];
		else secrets[name] = sealSecret(key, value, secretContext(role.name, name));
	}
	const envTemplate = input.env_template ?? current?.envTemplate ?? '';
	const missing = secretsUsed(envTemplate).filter((name) => !(name in secrets));
	if (missing.length) {
		throw new ServiceError(
			'validation_failed',
			`The env template names secrets that are not set: ${missing.join(', ')}`,
			{
				env_template: `names secrets that are not set: ${[...new Set(missing)].join(', ')}`
			}
		);
	}
	const values = {
		repoUrl: input.repo_url !== undefined ? input.repo_url : (current?.repoUrl ?? null),
		packages: input.packages ? [...new Set(input.packages)] : (current?.packages ?? []),
		serviceUser: input.service_user !== undefined ? input.service_user : (current?.serviceUser ?? null),
		envTemplate,
		secrets,
		unitTemplates: input.unit_templates ?? current?.unitTemplates ?? [],
		updatedAt: new Date()
	};
	const [row] = await db()
		.insert(roleProvisioning)
		.values({ role: role.name, ...values })
		.onConflictDoUpdate({ target: roleProvisioning.role, set: values })
		.returning();
	// The audit names which secrets changed, never their values.
	const { secrets: changedSecrets, ...rest } = input;
	await recordAudit(actor, {
		action: 'role.provisioning.update',
		targetType: 'role',
		targetId: role.name,
		details: { ...rest, ...(changedSecrets ? { secrets_changed: Object.keys(changedSecrets) } : {}) }
	});
	await recordEvent({ type: 'role.changed', data: { role: role.name } });
	return row!;
}

/** The role's service account: its own, or one named after the role. */
export function serviceUserOf(def: Pick<RoleProvisioning, 'role' | 'serviceUser'>): string {
	return def.serviceUser ?? def.role;
}

/** Where the rendered env file lives on a node. */
export function envFileOf(role: string): { dir: string; file: string } {
	return { dir: `/etc/${role}`, file: `/etc/${role}/${role}.env` };
}

/** The definition as the API shows it: secret names only. */
export function presentDefinition(def: RoleProvisioning | null, role: string) {
	return {
		role,
		repo_url: def?.repoUrl ?? null,
		packages: def?.packages ?? [],
		service_user: def?.serviceUser ?? null,
		effective_service_user: serviceUserOf({ role, serviceUser: def?.serviceUser ?? null }),
		env_file: envFileOf(role).file,
		env_template: def?.envTemplate ?? '',
		secret_names: Object.keys(def?.secrets ?? {}).sort(),
		unit_templates: def?.unitTemplates ?? [],
		updated_at: def?.updatedAt ?? null
	};
}

/** What was provisioned on a node, per role: when, whether its packages are in, and the last failure. */
export async function provisioningOfNode(nodeId: string) {
	const rows = await db().select().from(nodeProvisioning).where(eq(nodeProvisioning.nodeId, nodeId));
	return rows
		.sort((a, b) => a.role.localeCompare(b.role))
		.map((r) => ({
			role: r.role,
			provisionedAt: r.provisionedAt?.toISOString() ?? null,
			depsInstalledAt: r.depsInstalledAt?.toISOString() ?? null,
			lastRunId: r.lastRunId,
			lastError: r.lastError
		}));
}
