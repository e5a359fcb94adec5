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
import { supersedes, tagVersion } from './tags';

export interface NotifyResult {
	commit: string;
	/** `new_commit`: it became the role's latest. `reason`: why a commit new to a role following tags did not. */
	roles: { role: string; new_commit: boolean; nodes_outdated: number; reason?: string }[];
}

/**
 * A commit landed for some roles (the post-commit hook calls this; docs/code-sync.md). The commit becomes each
 * role's latest, which makes every node with that role and another commit OUTDATED for it. Idempotent:
 * a commit already known for a role changes nothing, so a re-sent hook cannot move a role backwards. A role
 * that follows tags takes it only when its tag names a higher version than the latest's ("Following tags");
 * a known commit notified again with its new tag is considered for such roles.
 */
export async function notifyCommit(actor: Actor, input: z.infer<typeof notifySchema>): Promise<NotifyResult> {
	const roleNames = [...new Set(input.changed_roles)];
	await assertRolesExist(roleNames, 'changed_roles');
	const reasons = new Map<string, string>();
	const fresh = await db().transaction(async (tx) => {
		const written = await tx
			.insert(codeCommits)
			.values(
				roleNames.map((role) => ({
					role,
					commit: input.commit,
					branch: input.branch ?? null,
					tag: input.tag ?? null,
					message: input.message ?? null,
					author: input.author ?? null,
					notifiedBy: actor.name
				}))
			)
			.onConflictDoUpdate({
				target: [codeCommits.role, codeCommits.commit],
				set: { tag: sql`excluded.tag` },
				where: sql`${codeCommits.tag} is null and excluded.tag is not null`
			})
			// xmax is 0 on a row this statement inserted, and set on one it updated (a known commit, now tagged).
			.returning({ role: codeCommits.role, inserted: sql<boolean>`(xmax = 0)` });
		const roles = written.length
			? await tx
					.select({ name: codeRoles.name, followTags: codeRoles.followTags, latestTag: codeCommits.tag })
					.from(codeRoles)
					.leftJoin(
						codeCommits,
						and(eq(codeCommits.role, codeRoles.name), eq(codeCommits.commit, codeRoles.latestCommit))
					)
					.where(
						inArray(
							codeRoles.name,
							written.map((w) => w.role)
						)
					)
					.for('update', { of: codeRoles })
			: [];
		const names: string[] = [];
		for (const w of written) {
			const role = roles.find((r) => r.name === w.role)!;
			if (!role.followTags) {
				if (w.inserted) names.push(w.role);
			} else if (supersedes(role.followTags, input.tag, role.latestTag)) names.push(w.role);
			else reasons.set(w.role, notFollowed(role.followTags, input.tag, role.latestTag));
		}
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
		const reason = reasons.get(role);
		roles.push({ role, new_commit: fresh.has(role), nodes_outdated: count, ...(reason ? { reason } : {}) });
	}
	await recordAudit(actor, {
		action: 'code.notify',
		targetType: 'commit',
		targetId: input.commit,
		details: {
			changed_roles: roleNames,
			new_for: [...fresh],
			branch: input.branch,
			tag: input.tag,
			message: input.message
		}
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

/** Why a role following `glob` did not take a commit tagged `tag`, in the operator's words. */
function notFollowed(glob: string, tag: string | undefined, latest: string | null): string {
	if (!tag) return `the role follows tags ${glob} and this notification names no tag`;
	if (!tagVersion(glob, tag))
		return `the role follows tags ${glob}; ${tag} is not one of them (or not a semantic version)`;
	return `the role follows tags ${glob}; ${tag} is not above its latest, ${latest}`;
}

/** The most recent notified commits of a role, newest first. */
export async function recentCommits(role: string, limit = 20): Promise<CodeCommit[]> {
	return db().select().from(codeCommits).where(eq(codeCommits.role, role)).orderBy(desc(codeCommits.id)).limit(limit);
}
