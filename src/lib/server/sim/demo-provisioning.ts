import { createHash, randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { createRoleSchema } from '$lib/schemas/code-sync';
import { provisioningDefinitionSchema } from '$lib/schemas/provisioning';
import { systemActor } from '$lib/server/audit';
import { notifyCommit } from '$lib/server/codesync/notify';
import { createRole } from '$lib/server/codesync/roles';
import { db } from '$lib/server/db';
import { codeRoles } from '$lib/server/db/schema';
import { findDefinition, saveDefinition } from '$lib/server/provisioning/definitions';
import { newOrigin, type SimOrigin } from './git';
import type { HostModel } from './host';
import { nodePaths } from './paths';

/**
 * The demo's role ready to provision (docs/provisioning.md): `billing` runs on no node yet, and its definition
 * names everything a fresh node needs, so that Provision on any demo server shows all six phases doing real
 * work on the simulated node: its repository cloned, its package installed, its account, env folder and file
 * made, its unit installed, enabled and started, its health checked.
 */
export const DEMO_PROVISIONED_ROLE = 'billing';
const REPO_URL = 'https://git.demo.flotilla.invalid/billing.git';
const PACKAGE = { name: 'libpq5', arch: 'amd64', version: '15.8-0+deb12u1', suites: ['bookworm'] };

/** The billing repository: two commits with stable shas, so a restart shows the same version. */
export function demoProvisionedOrigin(): SimOrigin {
	return newOrigin(
		DEMO_PROVISIONED_ROLE,
		[1, 2].map((n) => ({ sha: createHash('sha1').update(`demo ${DEMO_PROVISIONED_ROLE} ${n}`).digest('hex') }))
	);
}

/** What a demo server offers the role: its repository to clone, its package already in the archive and installed. */
export function offerProvisionedRole(model: HostModel, origin: SimOrigin): void {
	model.remotes.set(REPO_URL, origin);
	model.apt.packages.push({ ...PACKAGE, installed: PACKAGE.version, candidate: PACKAGE.version });
}

const UNIT = `[Unit]
Description=The demo fleet's {{ role }} app
After=network-online.target

[Service]
User={{ user }}
EnvironmentFile={{ env_file }}
WorkingDirectory={{ workdir }}
ExecStart={{ workdir }}/bin/billing
Restart=on-failure

[Install]
WantedBy=multi-user.target
`;

/**
 * The role, its latest commit as a post-commit hook would announce it, and its provisioning definition with a
 * secret made at the first start. Idempotent across restarts: what an admin changed in either is kept.
 */
export async function defineDemoProvisionedRole(origin: SimOrigin, order: number): Promise<void> {
	const [known] = await db()
		.select({ name: codeRoles.name })
		.from(codeRoles)
		.where(eq(codeRoles.name, DEMO_PROVISIONED_ROLE));
	if (!known) {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: DEMO_PROVISIONED_ROLE,
				description: `The demo fleet's ${DEMO_PROVISIONED_ROLE} app: on no node yet, ready to provision`,
				path: nodePaths.repo(DEMO_PROVISIONED_ROLE),
				units: [`${DEMO_PROVISIONED_ROLE}.service`],
				install_command: ['sh', 'install.sh'],
				order
			})
		);
	}
	await notifyCommit(systemActor, {
		commit: origin.commits.at(-1)!.sha,
		changed_roles: [DEMO_PROVISIONED_ROLE],
		branch: 'main',
		message: `${DEMO_PROVISIONED_ROLE} ${origin.commits.length}`,
		author: 'Flotilla demo'
	});
	if (await findDefinition(DEMO_PROVISIONED_ROLE)) return;
	await saveDefinition(
		systemActor,
		DEMO_PROVISIONED_ROLE,
		provisioningDefinitionSchema.parse({
			repo_url: REPO_URL,
			packages: [PACKAGE.name],
			env_template:
				'DATABASE_URL=postgres://billing:{{ secret.DB_PASSWORD }}@db.demo.flotilla.invalid/billing\nPORT=8081\n',
			secrets: { DB_PASSWORD: randomBytes(12).toString('hex') },
			unit_templates: [{ name: `${DEMO_PROVISIONED_ROLE}.service`, template: UNIT }]
		})
	);
}
