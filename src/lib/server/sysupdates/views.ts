import { asc, eq, inArray } from 'drizzle-orm';
import type { NodeUpdateRequest } from '$lib/schemas/system-updates';
import { db } from '$lib/server/db';
import {
	nodes,
	sysNodeScans,
	sysPendingPackages,
	type Node,
	type SysNodeScan,
	type SysPendingPackage
} from '$lib/server/db/schema';
import { holdPatternsFor } from './holds';
import { applySoak, decide, type Decision, type EffectivePolicy, type Policy, type Soak } from './policy';
import { firstSeenOf } from './records';
import { policiesOf, policyOf } from './role-policies';

/** One node as the System Updates page and `GET /api/updates/system` show it. */
export interface NodeUpdates {
	node: Pick<Node, 'id' | 'name' | 'policy' | 'roles' | 'labels' | 'controlPlane' | 'hostKeyStatus'>;
	/** The policy that applies: the node's own, or its roles' default. */
	policy: EffectivePolicy;
	scan: SysNodeScan | null;
	pending: SysPendingPackage[];
}

export async function systemUpdatesView(filter: { nodeIds?: string[] } = {}): Promise<NodeUpdates[]> {
	const where = filter.nodeIds ? inArray(nodes.id, filter.nodeIds) : undefined;
	const rows = await db()
		.select({
			id: nodes.id,
			name: nodes.name,
			policy: nodes.policy,
			roles: nodes.roles,
			labels: nodes.labels,
			controlPlane: nodes.controlPlane,
			hostKeyStatus: nodes.hostKeyStatus
		})
		.from(nodes)
		.where(where)
		.orderBy(asc(nodes.name));
	const ids = rows.map((r) => r.id);
	const [scans, pending] = ids.length
		? await Promise.all([
				db().select().from(sysNodeScans).where(inArray(sysNodeScans.nodeId, ids)),
				db()
					.select()
					.from(sysPendingPackages)
					.where(inArray(sysPendingPackages.nodeId, ids))
					.orderBy(asc(sysPendingPackages.name), asc(sysPendingPackages.arch))
			])
		: [[], []];
	const scanOf = new Map(scans.map((s) => [s.nodeId, s]));
	const policies = await policiesOf(rows);
	return rows.map((node) => ({
		node,
		policy: policies.get(node.id)!,
		scan: scanOf.get(node.id) ?? null,
		pending: pending.filter((p) => p.nodeId === node.id)
	}));
}

/** What an update of the node would apply, from its last scan: the plan an operator confirms. */
export async function planFromLastScan(
	node: Node,
	request: NodeUpdateRequest,
	soak?: Soak
): Promise<Decision & { policy: Policy; candidates: { name: string; candidate: string }[] }> {
	const [scan] = await db().select().from(sysNodeScans).where(eq(sysNodeScans.nodeId, node.id));
	const pending = await db().select().from(sysPendingPackages).where(eq(sysPendingPackages.nodeId, node.id));
	const { policy } = await policyOf(node);
	let decision = decide({
		policy,
		forceFull: request.force_full,
		packages: request.packages,
		pending,
		aptHeld: scan?.held ?? [],
		holdPatterns: await holdPatternsFor(node),
		reboot: request.reboot
	});
	if (soak && soak.days > 0) {
		const seen = await firstSeenOf(pending);
		decision = applySoak(
			decision,
			pending,
			(p) => seen.get(`${p.name} ${p.arch} ${p.candidate}`) ?? null,
			new Date(),
			soak
		);
	}
	const byName = new Map(pending.map((p) => [p.name, p.candidate]));
	return { ...decision, policy, candidates: decision.packages.map((name) => ({ name, candidate: byName.get(name)! })) };
}

export const presentNodeUpdates = (v: NodeUpdates) => ({
	node_id: v.node.id,
	name: v.node.name,
	policy: v.policy.policy,
	/** The role whose default policy applies; null when the node has its own (or none of its roles has one). */
	policy_role: v.policy.role,
	roles: v.node.roles,
	labels: v.node.labels,
	control_plane: v.node.controlPlane,
	pending_count: v.pending.length,
	security_count: v.pending.filter((p) => p.security).length,
	pending: v.pending.map((p) => ({
		name: p.name,
		arch: p.arch,
		installed: p.installed,
		candidate: p.candidate,
		suites: p.suites,
		security: p.security,
		security_reason: p.securityReason
	})),
	reboot_required: v.scan?.rebootRequired ?? false,
	reboot_packages: v.scan?.rebootPackages ?? [],
	/** null when needrestart is not installed on the node (or it was never scanned). */
	services_to_restart: v.scan?.servicesToRestart ?? null,
	held: v.scan?.held ?? [],
	last_scan: v.scan?.scannedAt ?? null,
	last_error: v.scan?.lastError ?? null,
	last_error_at: v.scan?.lastErrorAt ?? null
});
