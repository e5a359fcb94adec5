import { json } from '@sveltejs/kit';
import { certRoleSchema } from '$lib/schemas/certificates';
import { actorOf } from '$lib/server/audit';
import { defineCertRole, listCertRoles, presentCertRole } from '$lib/server/certs/roles';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () =>
	json({ items: (await listCertRoles()).map(presentCertRole) })
);

/** Defines (or replaces) a role's certificate settings. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const role = await defineCertRole(actorOf(event), await readJson(event.request, certRoleSchema));
	return json(presentCertRole(role), { status: 201 });
});
