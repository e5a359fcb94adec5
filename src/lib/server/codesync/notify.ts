import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import type { z } from 'zod';
import type { notifySchema } from '$lib/schemas/code-sync';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { codeCommits, codeRoles, nodes, type CodeCommit } from '$lib/server/db/schema';
import { recordEvent } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { assertRolesExist } from './roles';
import { behindCondition } from './status';

export interface NotifyResult {
	commit: string;
	roles: { role: string; new_commit: boolean; nodes_outdated: number }[];
}

/**
 * A commit landed for some roles (the post-commit hook calls this; docs/code-sync.md). The commit becomes each
 * role's latest, which makes every node with that role and another commit OUTDATED for it. Idempotent:
 * a commit already known for a role changes nothing, so a re-sent hook cannot move a role backwards.
 */
export async function notifyCommit(actor: Actor, input: z.infer<typeof notifySchema>): Promise<NotifyResult> {
	const roleNames = [...new Set(input.changed_roles)];
	await assertRolesExist(roleNames, 'changed_roles');
	const fresh = await db().transaction(async (tx) => {
		const inserted = await tx
			.insert(codeCommits)
			.values(
				roleNames.map((role) => ({
					role,
					commit: input.commit,
					branch: input.branch ?? null,
					message: input.message ?? null,
					author: input.author ?? null,
					notifiedBy: actor.name
				}))
			)
			.onConflictDoNothing()
			.returning({ role: codeCommits.role });
		const names = inserted.map((r) => r.role);
		if (names.length) {
			await tx
				.update(codeRoles)
				.set({
					latestCommit: input.commit,
					latestMessage: input.message ?? null,
					latestAuthor: input.author ?? null,
					latestAt: new Date(),
					updatedAt: new Date()
				})
				.where(inArray(codeRoles.name, names));
		}
		return new Set(names);
	});
	const roles: NotifyResult['roles'] = [];
	for (const role of roleNames) {
		const [{ count }] = (await db()
			.select({ count: sql<number>`count(*)::int` })
			.from(nodes)
			.where(and(sql`${role} = any(${nodes.roles})`, behindCondition(role)))) as [{ count: number }];
		roles.push({ role, new_commit: fresh.has(role), nodes_outdated: count });
	}
	await recordAudit(actor, {
		action: 'code.notify',
		targetType: 'commit',
		targetId: input.commit,
		details: { changed_roles: roleNames, new_for: [...fresh], branch: input.branch, message: input.message }
	});
	if (fresh.size) {
		await recordEvent({
			type: 'code.commit',
			data: { commit: input.commit, roles: [...fresh], message: input.message }
		});
	}
	return { commit: input.commit, roles };
}

export interface PinResult {
	role: string;
	commit: string;
	previous: string | null;
	nodes_outdated: number;
}

/**
 * Sets a role's target back (or forward) to a commit notified for it before: the way out of a wrong or bad
 * notification. The history keeps every notification; the audit log says who moved the target and from where.
 */
export async function pinCommit(actor: Actor, role: string, commit: string): Promise<PinResult> {
	await assertRolesExist([role], 'role');
	const result = await db().transaction(async (tx) => {
		const [current] = await tx
			.select({ latest: codeRoles.latestCommit })
			.from(codeRoles)
			.where(eq(codeRoles.name, role))
			.for('update');
		const known = await tx
			.select()
			.from(codeCommits)
			.where(and(eq(codeCommits.role, role), sql`starts_with(${codeCommits.commit}, ${commit})`))
			.orderBy(desc(codeCommits.id))
			.limit(2);
		const distinct = new Set(known.map((k) => k.commit));
		if (!known.length) {
			throw new ServiceError('validation_failed', `No commit ${commit} was notified for ${role}`, {
				commit: 'is not a commit notified for this role: notify it first'
			});
		}
		if (distinct.size > 1) {
			throw new ServiceError('validation_failed', `${commit} names more than one commit of ${role}`, {
				commit: 'is ambiguous: give more characters'
			});
		}
		const target = known[0]!;
		await tx
			.update(codeRoles)
			.set({
				latestCommit: target.commit,
				latestMessage: target.message,
				latestAuthor: target.author,
				latestAt: new Date(),
				updatedAt: new Date()
			})
			.where(eq(codeRoles.name, role));
		return { commit: target.commit, previous: current?.latest ?? null };
	});
	const [{ count }] = (await db()
		.select({ count: sql<number>`count(*)::int` })
		.from(nodes)
		.where(and(sql`${role} = any(${nodes.roles})`, behindCondition(role)))) as [{ count: number }];
	await recordAudit(actor, {
		action: 'code.pin',
		targetType: 'role',
		targetId: role,
		details: { commit: result.commit, previous: result.previous }
	});
	if (result.commit !== result.previous) {
		await recordEvent({ type: 'code.commit', data: { commit: result.commit, roles: [role], pinned: true } });
	}
	return { role, ...result, nodes_outdated: count };
}

/** The most recent notified commits of a role, newest first. */
export async function recentCommits(role: string, limit = 20): Promise<CodeCommit[]> {
	return db().select().from(codeCommits).where(eq(codeCommits.role, role)).orderBy(desc(codeCommits.id)).limit(limit);
}
