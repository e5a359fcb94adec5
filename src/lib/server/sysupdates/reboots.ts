import { and, eq, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { sysReboots, type Node } from '$lib/server/db/schema';

/** Notes that the node is going down for a reboot in this run. */
export async function recordRebootStart(runId: string, node: Node): Promise<void> {
	const row = {
		nodeName: node.name,
		roles: node.roles,
		state: 'down' as const,
		reason: null,
		startedAt: new Date(),
		endedAt: null
	};
	await db()
		.insert(sysReboots)
		.values({ runId, nodeId: node.id, ...row })
		.onConflictDoUpdate({ target: [sysReboots.runId, sysReboots.nodeId], set: row });
}

export async function recordRebootEnd(runId: string, nodeId: string, failure: string | null): Promise<void> {
	await db()
		.update(sysReboots)
		.set({ state: failure ? 'failed' : 'back', reason: failure, endedAt: new Date() })
		.where(and(eq(sysReboots.runId, runId), eq(sysReboots.nodeId, nodeId)));
}

/**
 * Why this node must not reboot now: another node of one of its roles failed to come back in this run (its
 * role's batch is stopped). Null when nothing stands in the way.
 */
export async function rebootBlockedBy(runId: string, node: Node): Promise<string | null> {
	if (!node.roles.length) return null;
	const [failed] = await db()
		.select({ name: sysReboots.nodeName, roles: sysReboots.roles, reason: sysReboots.reason })
		.from(sysReboots)
		.where(
			and(
				eq(sysReboots.runId, runId),
				eq(sysReboots.state, 'failed'),
				sql`${sysReboots.roles} && ${sql`array[${sql.join(
					node.roles.map((r) => sql`${r}`),
					sql`, `
				)}]::text[]`}`
			)
		)
		.limit(1);
	if (!failed) return null;
	const shared = failed.roles.filter((r) => node.roles.includes(r));
	return `the reboots of role ${shared.join(', ')} stopped in this run: ${failed.name} did not come back (${failed.reason})`;
}

/**
 * The phases of a run that may reboot its nodes, so that no phase takes down more than `share` of a role's
 * nodes (at least one), and control-plane nodes come last, one per phase. Greedy, in the given order: each
 * node goes to the first phase where every one of its roles still has room.
 */
export function rebootPhases(
	list: { id: string; roles: string[]; controlPlane: boolean }[],
	share: number,
	roleSizes: Map<string, number>
): Map<string, number> {
	const room = (role: string) => Math.max(1, Math.floor((roleSizes.get(role) ?? 1) * share));
	const used: Map<string, number>[] = [];
	const phaseOf = new Map<string, number>();
	for (const n of list.filter((n) => !n.controlPlane)) {
		let phase = 0;
		while (n.roles.some((r) => (used[phase]?.get(r) ?? 0) >= room(r))) phase++;
		used[phase] ??= new Map();
		for (const r of n.roles) used[phase]!.set(r, (used[phase]!.get(r) ?? 0) + 1);
		phaseOf.set(n.id, phase);
	}
	let next = used.length;
	for (const n of list.filter((n) => n.controlPlane)) phaseOf.set(n.id, next++);
	return phaseOf;
}
