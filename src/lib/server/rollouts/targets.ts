import { and, asc, inArray } from 'drizzle-orm';
import { scopeConditions } from '$lib/server/codesync/plan';
import { db, type Database } from '$lib/server/db';
import { codeRoles, nodes, type Release, type RolloutTarget } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { updatesPulled } from './pull';
import { releaseKindOf } from './release-kinds';

/** The deploy methods a release's commit goes out by (docs/releases.md, "The commands method"). */
const releaseMethods: string[] = ['git', 'push', 'commands'];

export interface ResolvedTarget {
	/** The roles whose commit the release sets, per node intersected with the node's own roles. */
	roles: string[];
	nodes: { id: string; name: string }[];
	excluded: { id: string; name: string; reason: string }[];
}

/**
 * Which nodes a rollout's target selects now (docs/releases.md, "Targets"): nodes matching every given filter
 * (any of the roles, all of the labels, the listed nodes), on the target's channel (a node's `channel` label,
 * `stable` when it has none; the release's channel when the target names none), with a pinned host key and at
 * least one role the release deploys to (the target's roles, or every git, push and commands role). A release of a
 * registered kind (release-kinds.ts) selects the nodes of its node kind instead of nodes with those roles.
 */
export async function resolveTarget(
	target: RolloutTarget,
	release: Pick<Release, 'id' | 'channel'>,
	exec: Database = db()
): Promise<ResolvedTarget> {
	const kind = await releaseKindOf(release, exec);
	const roleRows = await exec.select().from(codeRoles);
	const known = new Set(roleRows.map((r) => r.name));
	const unknown = (target.roles ?? []).filter((r) => !known.has(r));
	if (unknown.length) {
		throw new ServiceError('validation_failed', `Unknown role: ${unknown.join(', ')}`, {
			'target.roles': `no role ${unknown.join(', ')}`
		});
	}
	const roles = target.roles?.length
		? target.roles
		: roleRows.filter((r) => releaseMethods.includes(r.method)).map((r) => r.name);
	const rows = await exec
		.select()
		.from(nodes)
		.where(and(...scopeConditions({ nodes: target.nodes, labels: target.labels, roles: target.roles })))
		.orderBy(asc(nodes.name));
	if (target.nodes?.length) {
		const found = new Set(rows.flatMap((n) => [n.id, n.name]));
		const missing = target.nodes.filter((n) => !found.has(n));
		if (missing.length) {
			throw new ServiceError('validation_failed', `Unknown node: ${missing.join(', ')}`, {
				'target.nodes': `no node ${missing.join(', ')}`
			});
		}
	}
	const channel = target.channel ?? release.channel;
	const out: ResolvedTarget = { roles, nodes: [], excluded: [] };
	for (const n of rows) {
		const nodeChannel = n.labels.channel ?? 'stable';
		if (nodeChannel !== channel) continue;
		// A release of another kind (an appliance image) goes to nodes of its node kind, whatever their roles.
		if (kind ? n.kind !== kind.nodeKind : !n.roles.some((r) => roles.includes(r))) continue;
		// A pull node's agent takes its updates over HTTPS: the console needs no SSH host key for it.
		if (n.hostKeyStatus !== 'pinned' && !(await updatesPulled(n))) {
			out.excluded.push({ id: n.id, name: n.name, reason: 'its host key is not pinned' });
			continue;
		}
		out.nodes.push({ id: n.id, name: n.name });
	}
	return out;
}

export async function nodeNames(ids: string[]): Promise<Map<string, string>> {
	if (!ids.length) return new Map();
	const rows = await db().select({ id: nodes.id, name: nodes.name }).from(nodes).where(inArray(nodes.id, ids));
	return new Map(rows.map((r) => [r.id, r.name]));
}
