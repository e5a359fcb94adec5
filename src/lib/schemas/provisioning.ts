import { z } from 'zod';
import { wrongType } from './common';
import { roleNameSchema } from './nodes';
import { packageNameSchema, unixUserSchema } from './remote';

/**
 * Provisioning's inputs (docs/provisioning.md): what a role needs on a fresh node, and the provisioning of one
 * node. Names that become paths on a node (unit files) are checked so that none can leave its folder.
 */

// eslint-disable-next-line no-control-regex -- control characters are what it finds
export const controlChars = /[\u0000-\u001f\u007f]/;
// eslint-disable-next-line no-control-regex -- a template may hold tabs and newlines, nothing else below 0x20
const templateControlChars = /[\u0000-\u0008\u000b-\u001f\u007f]/;

/** The phases in the order they run; a run may name any of them, in this order. */
export const provisioningPhases = ['clean', 'deploy', 'system_deps', 'secrets', 'services', 'verify'] as const;
export type ProvisioningPhase = (typeof provisioningPhases)[number];

/** What `{{ … }}` may name: the role's own facts, and in the env template only, its secrets. */
const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g;
const VARIABLES = new Set(['role', 'user', 'env_file', 'path', 'workdir']);
const SECRET_REF = /^secret\.([A-Z_][A-Z0-9_]{0,63})$/;

export const secretNameSchema = z
	.string(wrongType('is required'))
	.regex(/^[A-Z_][A-Z0-9_]{0,63}$/, 'must be an upper-case name: letters, digits, _ (at most 64)');

/** A secret's value goes on one line of the env file: no newlines, no control characters. */
export const secretValueSchema = z
	.string(wrongType('must be a string'))
	.min(1, 'must not be empty')
	.max(4096, 'must be at most 4096 characters')
	.refine((v) => !controlChars.test(v), 'must be one line without control characters');

/** The placeholders a template names that it may not, in words; empty when every one is allowed. */
export function templateProblems(text: string, allowSecrets: boolean): string[] {
	const problems: string[] = [];
	for (const [, name] of text.matchAll(PLACEHOLDER)) {
		if (VARIABLES.has(name!)) continue;
		if (SECRET_REF.test(name!)) {
			if (!allowSecrets) problems.push(`{{ ${name} }}: secrets belong in the env file, not in a unit`);
			continue;
		}
		problems.push(`{{ ${name} }} is not a known placeholder (role, user, env_file, path, workdir, secret.NAME)`);
	}
	return problems;
}

/** The secret names a template uses. */
export function secretsUsed(text: string): string[] {
	return [...text.matchAll(PLACEHOLDER)].flatMap(([, name]) => SECRET_REF.exec(name!)?.slice(1, 2) ?? []);
}

// A whole definition (an env template and 16 units at their longest) stays under the endpoint's 512 KiB.
function templateSchema(allowSecrets: boolean, max: number) {
	return z
		.string(wrongType('must be text'))
		.max(max, `must be at most ${max} characters`)
		.refine((v) => !templateControlChars.test(v), 'must not contain control characters other than tabs and newlines')
		.superRefine((v, ctx) => {
			const problems = templateProblems(v, allowSecrets);
			if (problems.length) ctx.addIssue({ code: 'custom', message: problems.join('; ') });
		});
}

/**
 * A unit file's name in /etc/systemd/system: one file name, a systemd unit type, nothing that could climb out
 * of the folder (no `/`, no `..`).
 */
export const unitFileNameSchema = z
	.string(wrongType('is required'))
	.max(255, 'must be at most 255 characters')
	.regex(
		/^[A-Za-z0-9_][A-Za-z0-9_.@-]*\.(service|socket|timer|target|path)$/,
		'must be a unit file name such as app.service: letters, digits, _ . @ -, and a unit type'
	)
	.refine((v) => !v.includes('..'), 'must not contain ..');

export const unitTemplateSchema = z
	.object({
		name: unitFileNameSchema,
		template: templateSchema(false, 16_384).refine((v) => v.trim().length > 0, 'is required')
	})
	.strict();

/** A git URL the node clones from: a remote URL or an absolute path on the node, never an option. */
export const repoUrlSchema = z
	.string(wrongType('must be a URL or a path'))
	.max(2048, 'must be at most 2048 characters')
	.refine((v) => !v.startsWith('-') && !controlChars.test(v) && !/\s/.test(v), 'must not start with - or hold spaces')
	.refine(
		(v) => /^(https?|ssh|git):\/\/[^/]/.test(v) || (/^\//.test(v) && !v.split('/').includes('..')),
		'must be an http(s)://, ssh:// or git:// URL, or an absolute path without ..'
	);

const provisioningFields = {
	repo_url: repoUrlSchema.nullable(),
	packages: z
		.array(
			packageNameSchema.max(100, 'package names are at most 100 characters'),
			wrongType('must be a list of package names')
		)
		.max(64, 'at most 64 packages'),
	service_user: unixUserSchema
		.refine((v) => v !== 'root', 'must not be root: the role runs as its own account')
		.nullable(),
	env_template: templateSchema(true, 65_536),
	unit_templates: z
		.array(unitTemplateSchema, wrongType('must be a list of {name, template}'))
		.max(16, 'at most 16 units')
		.refine((list) => new Set(list.map((u) => u.name)).size === list.length, 'unit names must be unique'),
	/** Secret name → new value; null removes the secret. Absent names keep their sealed value. */
	secrets: z.record(secretNameSchema, secretValueSchema.nullable(), wrongType('must be an object of NAME: value'))
};

/** `PUT /api/roles/{name}/provisioning`: every field optional; what is absent stays as it is. */
export const provisioningDefinitionSchema = z.object(provisioningFields).partial().strict();
export type ProvisioningDefinitionInput = z.infer<typeof provisioningDefinitionSchema>;

/** `POST /api/nodes/{id}/provision`. */
export const provisionSchema = z
	.object({
		role: roleNameSchema,
		phases: z
			.array(
				z.enum(provisioningPhases, { error: `must be one of ${provisioningPhases.join(', ')}` }),
				wrongType('must be a list of phases')
			)
			.min(1, 'must name at least one phase')
			.refine((list) => new Set(list).size === list.length, 'must not name a phase twice')
			.refine(
				(list) =>
					list.every((p, i) => i === 0 || provisioningPhases.indexOf(p) > provisioningPhases.indexOf(list[i - 1]!)),
				`must be in order: ${provisioningPhases.join(', ')}`
			)
			.optional()
	})
	.strict();
export type ProvisionInput = z.infer<typeof provisionSchema>;
