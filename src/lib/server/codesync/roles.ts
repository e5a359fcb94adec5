import { asc, eq, inArray } from 'drizzle-orm';
import type { z } from 'zod';
import { SIGNATURES_NEED_GIT, type createRoleSchema, type updateRoleSchema } from '$lib/schemas/code-sync';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { codeRoles, type CodeRole } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { notFound, ServiceError } from '$lib/server/errors';

/** Role definitions: what a node runs and how Code Sync deploys it (docs/code-sync.md, "Roles"). */

export async function listRoles(): Promise<CodeRole[]> {
	return db().select().from(codeRoles).orderBy(asc(codeRoles.sortOrder), asc(codeRoles.name));
}

export async function getRole(name: string): Promise<CodeRole> {
	const [row] = await db().select().from(codeRoles).where(eq(codeRoles.name, name));
	if (!row) throw notFound(`Role ${name}`);
	return row;
}

/** Refuses names that are not defined roles, naming them under `field`. */
export async function assertRolesExist(names: string[], field: string): Promise<CodeRole[]> {
	const unique = [...new Set(names)];
	const rows = unique.length ? await db().select().from(codeRoles).where(inArray(codeRoles.name, unique)) : [];
	const missing = unique.filter((n) => !rows.some((r) => r.name === n));
	if (missing.length) {
		throw new ServiceError('validation_failed', `Unknown role: ${missing.join(', ')}`, {
			[field]: `unknown role ${missing.join(', ')} (define it under Code Sync → Roles first)`
		});
	}
	return rows;
}

type RoleFields = Partial<z.infer<typeof createRoleSchema>>;

function columns(input: RoleFields) {
	return {
		description: input.description,
		method: input.method,
		path: input.path,
		sourceRepo: input.source_repo,
		commands: input.commands,
		branch: input.branch,
		followTags: input.follow_tags,
		units: input.units,
		installCommand: input.install_command,
		restartCommand: input.restart_command,
		health: input.health,
		healthTimeoutSeconds: input.health_timeout_seconds,
		sortOrder: input.order,
		autoUpdate: input.auto_update,
		autoUpdateIntervalMinutes: input.auto_update_interval_minutes,
		autoUpdateMaxFailuresPerDay: input.auto_update_max_failures_per_day,
		signatures: input.signatures,
		readinessCheck: input.readiness_check,
		snapshot: input.snapshot,
		quiesce: input.quiesce,
		updatePolicy: input.update_policy
	};
}

export async function createRole(actor: Actor, input: z.infer<typeof createRoleSchema>): Promise<CodeRole> {
	const [row] = await db()
		.insert(codeRoles)
		.values({ name: input.name, ...columns(input), path: input.path })
		.onConflictDoNothing({ target: codeRoles.name })
		.returning();
	if (!row) throw new ServiceError('conflict', `A role named ${input.name} exists`, { name: 'already taken' });
	await recordAudit(actor, { action: 'role.create', targetType: 'role', targetId: row.name, details: input });
	await recordEvent({ type: 'role.changed', data: { role: row.name } });
	return row;
}

export async function updateRole(
	actor: Actor,
	name: string,
	changes: z.infer<typeof updateRoleSchema>
): Promise<CodeRole> {
	const current = await getRole(name);
	// The combined definition must still make sense (a push role keeps its source, units health keeps a unit).
	const method = changes.method ?? current.method;
	const sourceRepo = changes.source_repo !== undefined ? changes.source_repo : current.sourceRepo;
	if (method === 'push' && !sourceRepo) {
		throw new ServiceError('validation_failed', 'A push role needs the console-side git checkout', {
			source_repo: 'is required for the push method'
		});
	}
	const commands = changes.commands !== undefined ? changes.commands : current.commands;
	if ((method === 'commands') !== !!commands) {
		throw new ServiceError('validation_failed', 'The commands method needs its commands, and only it has them', {
			commands:
				method === 'commands'
					? 'is required for the commands method (backup, pull, migrate, smoke, switch)'
					: 'only a commands role has commands: set them to null'
		});
	}
	const signatures = changes.signatures !== undefined ? changes.signatures : current.signatures;
	if (method === 'commands' && signatures) {
		throw new ServiceError('validation_failed', 'A commands role cannot require signatures', {
			signatures: SIGNATURES_NEED_GIT
		});
	}
	const health = changes.health ?? current.health;
	const units = changes.units ?? current.units;
	if (health.type === 'units' && units.length === 0) {
		throw new ServiceError('validation_failed', 'A health check of type units needs at least one unit', {
			units: 'needs at least one unit for a units health check'
		});
	}
	const set = columns(changes);
	// Turning auto-update back on is the operator's acknowledgement of why it turned itself off.
	const reenabled = changes.auto_update === true ? { autoUpdateDisabledReason: null } : {};
	const [row] = await db()
		.update(codeRoles)
		.set({ ...set, ...reenabled, updatedAt: new Date() })
		.where(eq(codeRoles.name, name))
		.returning();
	await recordAudit(actor, { action: 'role.update', targetType: 'role', targetId: name, details: changes });
	await recordEvent({ type: 'role.changed', data: { role: name } });
	return row!;
}

export async function deleteRole(actor: Actor, name: string): Promise<void> {
	const gone = await db().delete(codeRoles).where(eq(codeRoles.name, name)).returning({ name: codeRoles.name });
	if (!gone.length) throw notFound(`Role ${name}`);
	await recordAudit(actor, { action: 'role.delete', targetType: 'role', targetId: name });
	await recordEvent({ type: 'role.changed', data: { role: name } });
}

export const presentRole = (r: CodeRole) => ({
	name: r.name,
	description: r.description,
	method: r.method,
	path: r.path,
	source_repo: r.sourceRepo,
	commands: r.commands,
	branch: r.branch,
	follow_tags: r.followTags,
	units: r.units,
	install_command: r.installCommand,
	restart_command: r.restartCommand,
	health: r.health,
	health_timeout_seconds: r.healthTimeoutSeconds,
	order: r.sortOrder,
	latest_commit: r.latestCommit,
	latest_message: r.latestMessage,
	latest_author: r.latestAuthor,
	latest_at: r.latestAt,
	auto_update: r.autoUpdate,
	auto_update_interval_minutes: r.autoUpdateIntervalMinutes,
	auto_update_max_failures_per_day: r.autoUpdateMaxFailuresPerDay,
	auto_update_disabled_reason: r.autoUpdateDisabledReason,
	auto_update_last_at: r.autoUpdateLastAt,
	signatures: r.signatures,
	readiness_check: r.readinessCheck,
	snapshot: r.snapshot,
	quiesce: r.quiesce,
	update_policy: r.updatePolicy,
	created_at: r.createdAt,
	updated_at: r.updatedAt
});
