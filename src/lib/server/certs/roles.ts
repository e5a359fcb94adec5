import { asc, eq, inArray } from 'drizzle-orm';
import type { CertRoleInput } from '$lib/schemas/certificates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certRoles, type CertRole } from '$lib/server/db/schema';
import { notFound } from '$lib/server/errors';

/**
 * Per role (the names nodes carry in `roles`), where its certificate lives, where it is served and how the
 * role is reloaded (docs/certificates.md, "Roles"). A node's certificates are those of its roles defined here.
 */

export async function defineCertRole(actor: Actor, input: CertRoleInput): Promise<CertRole> {
	const values = {
		certPath: input.cert_path,
		keyPath: input.key_path,
		endpoints: input.endpoints.map((e) => ({ port: e.port, ...(e.servername ? { servername: e.servername } : {}) })),
		reloadCommand: input.reload_command,
		issuer: input.issuer,
		validityDays: input.validity_days,
		extraSans: input.extra_sans,
		sortOrder: input.order,
		updatedAt: new Date()
	};
	const [row] = await db()
		.insert(certRoles)
		.values({ role: input.role, ...values })
		.onConflictDoUpdate({ target: certRoles.role, set: values })
		.returning();
	await recordAudit(actor, {
		action: 'certificates.role_defined',
		targetType: 'role',
		targetId: input.role,
		details: { ...input }
	});
	return row!;
}

export async function deleteCertRole(actor: Actor, role: string): Promise<void> {
	const gone = await db().delete(certRoles).where(eq(certRoles.role, role)).returning({ role: certRoles.role });
	if (!gone.length) throw notFound(`Certificate settings for role ${role}`);
	await recordAudit(actor, { action: 'certificates.role_deleted', targetType: 'role', targetId: role });
}

export function listCertRoles(): Promise<CertRole[]> {
	return db().select().from(certRoles).orderBy(asc(certRoles.sortOrder), asc(certRoles.role));
}

/** The certificate roles of a node, in rotation order. */
export async function certRolesOf(nodeRoles: string[]): Promise<CertRole[]> {
	if (!nodeRoles.length) return [];
	return db()
		.select()
		.from(certRoles)
		.where(inArray(certRoles.role, nodeRoles))
		.orderBy(asc(certRoles.sortOrder), asc(certRoles.role));
}

export const presentCertRole = (r: CertRole) => ({
	role: r.role,
	cert_path: r.certPath,
	key_path: r.keyPath,
	endpoints: r.endpoints,
	reload_command: r.reloadCommand,
	issuer: r.issuer,
	validity_days: r.validityDays,
	extra_sans: r.extraSans,
	order: r.sortOrder
});
