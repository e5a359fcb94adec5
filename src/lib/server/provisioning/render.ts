import type { CodeRole, RoleProvisioning } from '$lib/server/db/schema';
import { envFileOf, serviceUserOf } from './definitions';

/**
 * Fills a role's templates. Placeholders were checked when the role was saved (schemas/provisioning.ts), so a
 * name that is not known here can only be a secret removed since: that is an error, never an empty value.
 */
const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g;

export function renderTemplate(
	template: string,
	role: Pick<CodeRole, 'name' | 'path' | 'method'>,
	def: Pick<RoleProvisioning, 'role' | 'serviceUser'>,
	secrets: Record<string, string> = {}
): string {
	const vars: Record<string, string> = {
		role: role.name,
		user: serviceUserOf(def),
		env_file: envFileOf(role.name).file,
		path: role.path,
		workdir: role.method === 'push' ? `${role.path}/current` : role.path
	};
	const text = template.replace(PLACEHOLDER, (_, name: string) => {
		if (name in vars) return vars[name]!;
		const secret = /^secret\.(.+)$/.exec(name)?.[1];
		if (secret !== undefined && secret in secrets) return secrets[secret]!;
		throw new Error(`${role.name}: the template names ${name}, which the role does not define`);
	});
	return text.endsWith('\n') || text === '' ? text : `${text}\n`;
}
