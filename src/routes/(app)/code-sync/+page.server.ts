import { error } from '@sveltejs/kit';
import { z } from 'zod';
import { iso } from '$lib/format';
import { createRoleSchema, deployCommandLimits, pinSchema, updateRoleSchema } from '$lib/schemas/code-sync';
import { roleNameSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { pinCommit, recentCommits } from '$lib/server/codesync/notify';
import { createRole, deleteRole, listRoles, updateRole } from '$lib/server/codesync/roles';
import { nodesBehind, roleFailures, roleSummaries } from '$lib/server/codesync/views';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm } from '$lib/server/http/forms';
import { planAction, updateAction } from '$lib/server/codesync/update-forms';
import type { CodeRole } from '$lib/server/db/schema';
import { provisioningDefinitionSchema } from '$lib/schemas/provisioning';
import { findDefinition, presentDefinition, saveDefinition } from '$lib/server/provisioning/definitions';
import type { Actions, PageServerLoad } from './$types';

const BEHIND_PAGE = 100;

const presentRole = (r: CodeRole) => ({
	name: r.name,
	description: r.description,
	method: r.method,
	path: r.path,
	sourceRepo: r.sourceRepo,
	commands: r.commands,
	branch: r.branch,
	followTags: r.followTags,
	units: r.units,
	installCommand: r.installCommand,
	restartCommand: r.restartCommand,
	health: r.health,
	healthTimeoutSeconds: r.healthTimeoutSeconds,
	order: r.sortOrder,
	updatePolicy: r.updatePolicy,
	latestCommit: r.latestCommit,
	latestMessage: r.latestMessage,
	latestAuthor: r.latestAuthor,
	latestAt: iso(r.latestAt),
	autoUpdate: r.autoUpdate,
	autoUpdateIntervalMinutes: r.autoUpdateIntervalMinutes,
	autoUpdateMaxFailuresPerDay: r.autoUpdateMaxFailuresPerDay,
	autoUpdateDisabledReason: r.autoUpdateDisabledReason,
	autoUpdateLastAt: iso(r.autoUpdateLastAt),
	signatures: r.signatures,
	readinessCheck: r.readinessCheck,
	snapshot: r.snapshot,
	quiesce: r.quiesce
});

export const load: PageServerLoad = async (event) => {
	event.depends('app:code-sync');
	const { url } = event;
	const cursor = url.searchParams.get('cursor') || undefined;
	if (cursor && cursor.length > 63) error(400, 'Unknown cursor');
	const roles = await listRoles();
	const names = roles.map((r) => r.name);
	const [summaries, commits, failures, behind] = await Promise.all([
		roleSummaries(names),
		Promise.all(names.map((n) => recentCommits(n, 8))),
		Promise.all(names.map((n) => roleFailures(n, 5))),
		nodesBehind(BEHIND_PAGE, cursor)
	]);
	const principal = principalOf(event);
	const canEdit = authorize(event.route.id, 'POST', '?/saveRole', principal).allow;
	const edit = url.searchParams.get('edit');
	const editing = canEdit && edit ? (roles.find((r) => r.name === edit)?.name ?? null) : null;
	return {
		roles: roles.map((r, i) => ({
			...presentRole(r),
			summary: summaries.get(r.name)!,
			commits: commits[i]!.map((c) => ({
				commit: c.commit,
				branch: c.branch,
				tag: c.tag,
				message: c.message,
				author: c.author,
				notifiedBy: c.notifiedBy,
				notifiedAt: c.notifiedAt.toISOString()
			})),
			failures: failures[i]!.map((f) => ({ ...f, failedAt: iso(f.failedAt) }))
		})),
		behind: {
			items: behind.items.map((n) => ({
				...n,
				roles: n.roles.map((v) => ({ ...v, syncedAt: iso(v.syncedAt), failedAt: iso(v.failedAt) }))
			})),
			total: behind.total,
			nextCursor: behind.nextCursor,
			cursor: cursor ?? null
		},
		/** The role the form edits (`?edit=name`), or null for a new one. */
		editing,
		/** What provisioning needs for the role being edited (docs/provisioning.md); secrets by name only. */
		provisioning: editing ? presentDefinition(await findDefinition(editing), editing) : null,
		canUpdate: authorize(event.route.id, 'POST', '?/update', principal).allow,
		canEdit
	};
};

/** One argument (or unit) per line; blank lines are only spacing. Lines are trimmed: a pasted CRLF or an
 * indent is never part of an argument anyone meant to type. */
const lines = (v: FormDataEntryValue | null) =>
	typeof v === 'string'
		? v
				.split('\n')
				.map((l) => l.trim())
				.filter(Boolean)
		: [];

/**
 * A `commands` role's programs from the form (`command_backup` one argument per line, `command_backup_deadline`):
 * an empty deadline takes the default; a rollback left empty is no rollback, the other commands are required.
 */
function commandsFormShape(form: FormData, text: (k: string) => string) {
	const commands: Record<string, { argv: string[]; deadline_seconds: string | undefined }> = {};
	for (const { name } of deployCommandLimits) {
		const argv = lines(form.get(`command_${name}`));
		const deadline = text(`command_${name}_deadline`) || undefined;
		if (name === 'rollback' && argv.length === 0) continue;
		commands[name] = { argv, deadline_seconds: deadline };
	}
	return commands;
}

/** The role form as the JSON endpoint's body, so that the same schema checks it. */
function roleFormShape(form: FormData, creating: boolean) {
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' ? v.trim() : '';
	};
	const method = text('method') || 'git';
	const type = text('health_type') || 'units';
	const health =
		type === 'command'
			? { type, command: lines(form.get('health_command')) }
			: type === 'http'
				? { type, url: text('health_url') }
				: { type };
	const sourceRepo = text('source_repo');
	return {
		...(creating ? { name: text('name') } : {}),
		description: text('description'),
		method,
		path: text('path'),
		// Only a commands role has commands: another method sent by the form clears them on an edit.
		commands: method === 'commands' ? commandsFormShape(form, text) : creating ? undefined : null,
		// Empty clears it on an edit; on a new role it is simply not given.
		source_repo: sourceRepo || (creating ? undefined : null),
		branch: text('branch') || 'main',
		// Empty means follow the branch: on an edit that clears it.
		follow_tags: text('follow_tags') || (creating ? undefined : null),
		units: lines(form.get('units')),
		install_command: lines(form.get('install_command')),
		restart_command: lines(form.get('restart_command')),
		health,
		health_timeout_seconds: text('health_timeout_seconds') || undefined,
		order: text('order') || undefined,
		auto_update: form.get('auto_update') === 'on',
		auto_update_interval_minutes: text('auto_update_interval_minutes') || undefined,
		auto_update_max_failures_per_day: text('auto_update_max_failures_per_day') || undefined,
		// Empty: the role sets no default system-update policy (on an edit that clears it).
		update_policy: text('update_policy') || (creating ? undefined : null),
		...preflightFormShape(form, text)
	};
}

/**
 * The armored keys pasted one after another into one field: each ends at its END line. Whatever is not a key
 * stays a piece of its own, so that the schema refuses it with its reason instead of it being dropped.
 */
const armoredKeys = (v: FormDataEntryValue | null) =>
	typeof v === 'string'
		? v
				.replaceAll('\r\n', '\n')
				.split(/(?<=-----END PGP PUBLIC KEY BLOCK-----)/)
				.map((k) => k.trim())
				.filter(Boolean)
		: [];

/**
 * Signatures, pre-flight and quiesce as the JSON body's fields: each is null (none) unless the form names a
 * program or a key for it; on a new role an unused one is simply not given.
 */
function preflightFormShape(form: FormData, text: (k: string) => string) {
	const signers = lines(form.get('allowed_signers'));
	const openpgpKeys = armoredKeys(form.get('openpgp_keys'));
	const readiness = lines(form.get('readiness_command'));
	const quiesceArgv = lines(form.get('quiesce_command'));
	const resumeArgv = lines(form.get('resume_command'));
	return {
		signatures:
			signers.length || openpgpKeys.length
				? {
						...(signers.length ? { allowed_signers: signers } : {}),
						...(openpgpKeys.length ? { openpgp_keys: openpgpKeys } : {})
					}
				: null,
		readiness_check: readiness.length
			? { argv: readiness, deadline_seconds: text('readiness_deadline_seconds') || undefined }
			: null,
		snapshot:
			form.get('snapshot') === 'on'
				? {
						data_paths: lines(form.get('snapshot_data_paths')),
						keep: text('snapshot_keep') || undefined,
						restore_command: lines(form.get('snapshot_restore_command'))
					}
				: null,
		quiesce:
			quiesceArgv.length || resumeArgv.length
				? {
						quiesce: { argv: quiesceArgv, deadline_seconds: text('quiesce_deadline_seconds') || undefined },
						resume: { argv: resumeArgv, deadline_seconds: text('resume_deadline_seconds') || undefined }
					}
				: null
	};
}

/**
 * The provisioning form as the JSON endpoint's body. Units and new secrets are rows of paired fields; a row left
 * empty is no row. Existing secrets are kept unless ticked for removal; their values never reach the page.
 */
function provisioningFormShape(form: FormData) {
	const text = (k: string) => {
		const v = form.get(k);
		return typeof v === 'string' ? v : '';
	};
	const all = (k: string) => form.getAll(k).map((v) => (typeof v === 'string' ? v : ''));
	const unitNames = all('unit_name');
	const unitTexts = all('unit_template');
	const secretNames = all('secret_name');
	const secretValues = all('secret_value');
	const secrets: Record<string, string | null> = {};
	for (const name of all('remove_secret')) secrets[name] = null;
	secretNames.forEach((name, i) => {
		if (name.trim() || secretValues[i]) secrets[name.trim()] = secretValues[i] ?? '';
	});
	return {
		repo_url: text('repo_url').trim() || null,
		packages: text('packages')
			.split(/[\s,]+/)
			.filter(Boolean),
		service_user: text('service_user').trim() || null,
		env_template: text('env_template').replaceAll('\r\n', '\n'),
		unit_templates: unitNames
			.map((name, i) => ({ name: name.trim(), template: (unitTexts[i] ?? '').replaceAll('\r\n', '\n') }))
			.filter((u) => u.name || u.template.trim()),
		secrets
	};
}

const nameForm = z.object({ name: roleNameSchema });
const pinForm = pinSchema.extend({ role: roleNameSchema });

export const actions: Actions = {
	plan: (event) => planAction(event),
	update: (event) => updateAction(event),

	/** Makes a commit notified before the role's target again (a wrong notification undone). */
	pin: async (event) => {
		const parsed = await parseForm(event.request, pinForm);
		if (!parsed.ok) return parsed.failure;
		try {
			const r = await pinCommit(actorOf(event), parsed.data.role, parsed.data.commit);
			const behind = `${r.nodes_outdated} node${r.nodes_outdated === 1 ? '' : 's'} behind it`;
			return { notice: `${r.role} now targets ${r.commit.slice(0, 12)}: ${behind}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	/** Creates a role, or (with `original`) changes one; field errors come back next to their fields. */
	saveRole: async (event) => {
		const original = new URL(event.request.url).searchParams.get('role');
		if (original !== null) {
			const name = roleNameSchema.safeParse(original);
			if (!name.success) error(404, 'Role not found');
			const parsed = await parseForm(event.request, updateRoleSchema, (f) => roleFormShape(f, false));
			if (!parsed.ok) return parsed.failure;
			try {
				await updateRole(actorOf(event), name.data, parsed.data);
				return { notice: `Saved role ${name.data}.` };
			} catch (err) {
				return formError(err, parsed.form);
			}
		}
		const parsed = await parseForm(event.request, createRoleSchema, (f) => roleFormShape(f, true));
		if (!parsed.ok) return parsed.failure;
		try {
			const role = await createRole(actorOf(event), parsed.data);
			return { notice: `Created role ${role.name}. Nodes with this role show as outdated once a commit is notified.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	/** Saves what provisioning needs for a role (`?role=name`); field errors come back next to their fields. */
	saveProvisioning: async (event) => {
		const name = roleNameSchema.safeParse(new URL(event.request.url).searchParams.get('role'));
		if (!name.success) error(404, 'Role not found');
		const parsed = await parseForm(event.request, provisioningDefinitionSchema, provisioningFormShape);
		if (!parsed.ok) return parsed.failure;
		try {
			await saveDefinition(actorOf(event), name.data, parsed.data);
			return { notice: `Saved provisioning of ${name.data}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	deleteRole: async (event) => {
		const parsed = await parseForm(event.request, nameForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await deleteRole(actorOf(event), parsed.data.name);
			return { notice: `Deleted role ${parsed.data.name}.` };
		} catch (err) {
			return formError(err);
		}
	}
};
