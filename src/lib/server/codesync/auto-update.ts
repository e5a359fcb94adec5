import { and, eq } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { codeCommits, codeRoles, type CodeRole } from '$lib/server/db/schema';
import { countFailedTasks, recordEvent } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { log } from '$lib/server/log';
import { triggerUpdate } from './plan';

/**
 * Per-role auto-update (docs/code-sync.md): off by default. When on, at most once per interval, nodes behind the
 * role's latest commit — if that commit was notified for the role's branch — are updated by a run of their
 * own. More failed nodes in 24 hours than the role allows turns auto-update off, with the reason, until an
 * admin turns it back on: repeated failures need a person to look, not another automatic attempt.
 */

export const autoUpdateActor: Actor = { id: null, name: 'auto-update', via: 'system', ip: null };

const DAY_MS = 86_400_000;

/** Nodes whose auto-update of `role` failed (failed or rolled back) in the last 24 hours. */
export function recentAutoFailures(role: string): Promise<number> {
	return countFailedTasks({
		kind: 'code-sync',
		createdBy: autoUpdateActor.name,
		scopeRole: role,
		since: new Date(Date.now() - DAY_MS)
	});
}

async function disable(role: CodeRole, failures: number): Promise<void> {
	const reason = `Turned off after ${failures} failed node update${failures === 1 ? '' : 's'} in 24 hours (the limit is ${role.autoUpdateMaxFailuresPerDay}); fix the cause, then turn it back on.`;
	await db()
		.update(codeRoles)
		.set({ autoUpdate: false, autoUpdateDisabledReason: reason, updatedAt: new Date() })
		.where(eq(codeRoles.name, role.name));
	await recordAudit(autoUpdateActor, {
		action: 'role.auto_update_disabled',
		targetType: 'role',
		targetId: role.name,
		details: { failures, limit: role.autoUpdateMaxFailuresPerDay }
	});
	await recordEvent({ type: 'role.changed', data: { role: role.name, auto_update_disabled: reason } });
	log.warn({ role: role.name, failures }, 'auto-update turned itself off');
}

/**
 * Whether the role's latest commit was announced for the branch auto-update follows (or for no branch). A role
 * following tags took its latest by its tag, whatever branch carried it.
 */
async function onBranch(role: CodeRole): Promise<boolean> {
	if (!role.latestCommit) return false;
	if (role.followTags) return true;
	const [c] = await db()
		.select({ branch: codeCommits.branch })
		.from(codeCommits)
		.where(and(eq(codeCommits.role, role.name), eq(codeCommits.commit, role.latestCommit)));
	return !c?.branch || c.branch === role.branch;
}

export interface AutoUpdateResult {
	started: { role: string; run_id: string; nodes: number }[];
	disabled: string[];
}

export async function runAutoUpdates(now = new Date()): Promise<AutoUpdateResult> {
	const out: AutoUpdateResult = { started: [], disabled: [] };
	const roles = await db().select().from(codeRoles).where(eq(codeRoles.autoUpdate, true));
	for (const role of roles) {
		const failures = await recentAutoFailures(role.name);
		if (failures >= role.autoUpdateMaxFailuresPerDay) {
			await disable(role, failures);
			out.disabled.push(role.name);
			continue;
		}
		const due =
			!role.autoUpdateLastAt ||
			now.getTime() - role.autoUpdateLastAt.getTime() >= role.autoUpdateIntervalMinutes * 60_000;
		if (!due || !(await onBranch(role))) continue;
		await db().update(codeRoles).set({ autoUpdateLastAt: now }).where(eq(codeRoles.name, role.name));
		try {
			const { runId, plan } = await triggerUpdate(autoUpdateActor, {
				scope: { roles: [role.name] },
				dry_run: false
			});
			out.started.push({ role: role.name, run_id: runId!, nodes: plan.nodes.length });
		} catch (err) {
			// Nothing behind, or a run still covers the nodes: the next turn looks again.
			if (!(err instanceof ServiceError)) throw err;
		}
	}
	return out;
}
