import { and, desc, eq } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodes, roleCommitChecks, type CodeRole } from '$lib/server/db/schema';

/**
 * What the nodes' fetched repositories said about a `git` role's target commit (docs/code-sync.md, "Update
 * All"): the console cannot ask a node's remote itself, so each Code Sync fetch records whether the commit was
 * there, and the plan flags a target the last look found missing.
 */

/** The node's fetched repository of `role` holds `commit` (or not), as seen now. */
export async function recordCommitCheck(nodeId: string, role: string, commit: string, found: boolean): Promise<void> {
	const checkedAt = new Date();
	await db()
		.insert(roleCommitChecks)
		.values({ nodeId, role, commit, found, checkedAt })
		.onConflictDoUpdate({
			target: [roleCommitChecks.nodeId, roleCommitChecks.role],
			set: { commit, found, checkedAt }
		});
}

/**
 * Why `commit` of a git role is known not to be there, or null: the latest look at it on any node found it
 * missing. A later look that found it (the commit was pushed since) clears the flag.
 */
export async function missingOnNodes(role: Pick<CodeRole, 'name' | 'path'>, commit: string): Promise<string | null> {
	const [last] = await db()
		.select({ found: roleCommitChecks.found, checkedAt: roleCommitChecks.checkedAt, node: nodes.name })
		.from(roleCommitChecks)
		.innerJoin(nodes, eq(nodes.id, roleCommitChecks.nodeId))
		.where(and(eq(roleCommitChecks.role, role.name), eq(roleCommitChecks.commit, commit)))
		.orderBy(desc(roleCommitChecks.checkedAt))
		.limit(1);
	if (!last || last.found) return null;
	// An absolute time, not "n s ago": the same plan asked twice (the API, then the dialog) must say the same.
	const at = last.checkedAt.toISOString().replace(/\.\d+Z$/, 'Z');
	return `not in ${last.node}'s fetched repository ${role.path} (checked ${at})`;
}
