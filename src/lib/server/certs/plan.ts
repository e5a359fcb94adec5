import { and, asc, inArray, lt, sql } from 'drizzle-orm';
import type { z } from 'zod';
import type { rotateSchema } from '$lib/schemas/certificates';
import type { Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certificates, certRoles, nodes, type Node } from '$lib/server/db/schema';
import { createRun } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { issuingCa } from './authority';
import { daysLeft } from './expiry';
import { listCertRoles } from './roles';
import { resolveNodes } from './scan';

/**
 * Which nodes a rotation covers and in what phases (docs/certificates.md, "Rotation"): control-plane nodes first,
 * then one phase per certificate role in the roles' order (a node goes with its first role). Every phase is
 * critical: a failure in one stops every later phase. A role with no TLS endpoint cannot be proven by a handshake
 * (its new certificate is checked on the node's disk only, rotate.ts): the plan says so before anyone confirms.
 */

export type RotateInput = z.infer<typeof rotateSchema>;

export interface RotationPlan {
	nodes: {
		id: string;
		name: string;
		phase: number;
		roles: string[];
		/** The soonest expiry in its inventory, in days (null: never scanned). */
		days_left: number | null;
		/** Why its rotation will not be proven by a handshake (null: every role it rotates has an endpoint). */
		warning: string | null;
	}[];
	phases: { phase: number; label: string; nodes: number }[];
	excluded: { id: string; name: string; reason: string }[];
	/** What the plan cannot prove, once per role: roles without endpoints. */
	warnings: string[];
}

/** "role X has no endpoints", "roles X, Y have no endpoints". */
const noEndpoints = (roles: string[]) =>
	`not proven by handshake: ${roles.length === 1 ? 'role' : 'roles'} ${roles.join(', ')} ${roles.length === 1 ? 'has' : 'have'} no endpoints`;

async function candidates(input: RotateInput): Promise<Node[]> {
	if (input.nodes) return resolveNodes(input.nodes, 'nodes');
	const withRole = sql`exists (select 1 from ${certRoles} cr where cr.role = any(${nodes.roles}))`;
	if (input.expiring_within_days === undefined) {
		return db().select().from(nodes).where(withRole).orderBy(asc(nodes.name));
	}
	const until = new Date(Date.now() + input.expiring_within_days * 86_400_000);
	const expiring = db()
		.selectDistinct({ id: certificates.nodeId })
		.from(certificates)
		.where(lt(certificates.notAfter, until));
	return db()
		.select()
		.from(nodes)
		.where(and(withRole, inArray(nodes.id, expiring)))
		.orderBy(asc(nodes.name));
}

export async function planRotation(input: RotateInput): Promise<RotationPlan> {
	const roles = await listCertRoles();
	const order = new Map(roles.map((r, i) => [r.role, i]));
	const byName = new Map(roles.map((r) => [r.role, r]));
	const plan: RotationPlan = { nodes: [], phases: [], excluded: [], warnings: [] };
	/** Per role without endpoints, how many nodes in the plan rotate it. */
	const unprovenCount = new Map<string, number>();
	const targets = await candidates(input);
	const soonest = new Map(
		(
			await db()
				.select({
					nodeId: certificates.nodeId,
					notAfter: sql<Date>`min(${certificates.notAfter})`.mapWith(certificates.notAfter)
				})
				.from(certificates)
				.where(
					inArray(
						certificates.nodeId,
						targets.length ? targets.map((n) => n.id) : ['00000000-0000-0000-0000-000000000000']
					)
				)
				.groupBy(certificates.nodeId)
		).map((r) => [r.nodeId, r.notAfter])
	);
	for (const node of targets) {
		const mine = node.roles.filter((r) => order.has(r)).sort((a, b) => order.get(a)! - order.get(b)!);
		if (!mine.length) {
			plan.excluded.push({ id: node.id, name: node.name, reason: 'none of its roles has certificate settings' });
			continue;
		}
		if (node.hostKeyStatus !== 'pinned') {
			plan.excluded.push({ id: node.id, name: node.name, reason: 'its host key is not accepted' });
			continue;
		}
		const notAfter = soonest.get(node.id);
		// As the rotation does: of the roles sharing one certificate file, only the first is rotated and verified.
		const rotated = mine.filter(
			(r, i) => mine.findIndex((o) => byName.get(o)!.certPath === byName.get(r)!.certPath) === i
		);
		const unproven = rotated.filter((r) => !byName.get(r)!.endpoints.length);
		for (const r of unproven) unprovenCount.set(r, (unprovenCount.get(r) ?? 0) + 1);
		plan.nodes.push({
			id: node.id,
			name: node.name,
			phase: node.controlPlane ? 0 : 1 + order.get(mine[0]!)!,
			roles: mine,
			days_left: notAfter ? daysLeft(notAfter) : null,
			warning: unproven.length ? noEndpoints(unproven) : null
		});
	}
	for (const { role } of roles) {
		const n = unprovenCount.get(role);
		if (!n) continue;
		plan.warnings.push(
			`Role ${role} has no endpoints (${n} ${n === 1 ? 'node' : 'nodes'}): not proven by handshake; the new certificate is verified on the node's disk only, not as served`
		);
	}
	plan.nodes.sort((a, b) => a.phase - b.phase || a.name.localeCompare(b.name));
	for (const phase of [...new Set(plan.nodes.map((n) => n.phase))]) {
		plan.phases.push({
			phase,
			label: phase === 0 ? 'Control plane first' : `Role ${roles[phase - 1]!.role}`,
			nodes: plan.nodes.filter((n) => n.phase === phase).length
		});
	}
	return plan;
}

/** `POST /api/security/certificates/rotate`: the plan for a dry run, otherwise the rotation run. */
export async function startRotation(
	actor: Actor,
	input: RotateInput
): Promise<{ plan: RotationPlan; runId: string | null }> {
	const plan = await planRotation(input);
	if (input.dry_run) return { plan, runId: null };
	if (!plan.nodes.length) {
		throw new ServiceError('conflict', 'Nothing to rotate: no node in scope has a certificate role', {
			nodes: plan.excluded[0]?.reason ?? 'no node with a certificate role'
		});
	}
	const roles = await listCertRoles();
	const needsCa = roles.some((r) => r.issuer === 'ca' && plan.nodes.some((n) => n.roles.includes(r.role)));
	if (needsCa && !(await issuingCa())) {
		throw new ServiceError('conflict', 'There is no internal CA to sign the new certificates: create or import one', {
			ca: 'no internal CA'
		});
	}
	const phaseOf = new Map(plan.nodes.map((n) => [n.id, n.phase]));
	const run = await createRun(actor, {
		kind: 'cert-rotate',
		title:
			plan.nodes.length === 1
				? `Rotate the certificate of ${plan.nodes[0]!.name}`
				: `Rotate ${plan.nodes.length} certificates`,
		nodeIds: plan.nodes.map((n) => n.id),
		scope: {
			...(input.nodes ? { nodes: input.nodes } : {}),
			...(input.expiring_within_days !== undefined ? { expiring_within_days: input.expiring_within_days } : {})
		},
		options: { concurrency: 5, criticalPhases: plan.phases.map((p) => p.phase) },
		phaseOf: (id) => phaseOf.get(id) ?? 1,
		exclusive: true
	});
	return { plan, runId: run.id };
}
