import { and, asc, inArray, or, sql, type SQL } from 'drizzle-orm';
import type { z } from 'zod';
import type { triggerSchema, UpdateScope } from '$lib/schemas/code-sync';
import type { Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { codeRoles, nodes, type CodeRole, type Node } from '$lib/server/db/schema';
import { createRun } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { missingOnNodes } from './commit-checks';
import { missingInConsole } from './methods';
import { assertRolesExist } from './roles';
import { versionsFor } from './status';

/**
 * Update All (docs/code-sync.md): which nodes, which roles, from which commit to which, in what order. The plan is
 * what the operator confirms; the run it starts pins the same target commits.
 */

export interface PlannedRole {
	role: string;
	from: string | null;
	to: string;
}

export interface PlannedNode {
	id: string;
	name: string;
	address: string;
	control_plane: boolean;
	/** 0: control-plane nodes, first, where one failure aborts the run; 1: everyone else. */
	phase: number;
	roles: PlannedRole[];
	/** Something the operator should know before confirming (e.g. the console never reached it). */
	warning: string | null;
}

export interface Plan {
	/** Per role, the commit this update deploys. */
	targets: Record<string, string>;
	/** The roles of `targets` whose commit (or tag) must be signed by an allowed signer to deploy. */
	signatures_required: string[];
	/**
	 * Targets the console can tell are not there to deploy (a push role's commit missing from the console's
	 * checkout, a git role's commit a node's last fetch did not bring), and why: the role's tasks would fail,
	 * so the plan says so before confirming.
	 */
	unknown_targets: { role: string; commit: string; reason: string }[];
	nodes: PlannedNode[];
	phases: { phase: number; label: string; nodes: number; critical: boolean }[];
	/** Nodes in scope left out, and why (up to date, no pinned host key, no role in scope). */
	excluded: { id: string; name: string; reason: string }[];
	concurrency: number;
	/** The scope as given, for the run's record. */
	scope: UpdateScope;
}

export const DEFAULT_UPDATE_CONCURRENCY = 5;

/** The nodes a scope selects, as SQL conditions (also a rollout's target). */
export function scopeConditions(scope: UpdateScope): SQL[] {
	const where: SQL[] = [];
	if (scope.nodes?.length) {
		const ids = scope.nodes.filter((n) => /^[0-9a-f-]{36}$/i.test(n));
		const names = scope.nodes.filter((n) => !ids.includes(n));
		where.push(
			or(ids.length ? inArray(nodes.id, ids) : undefined, names.length ? inArray(nodes.name, names) : undefined)!
		);
	}
	for (const label of scope.labels ?? []) {
		const [key, ...rest] = label.split('=');
		where.push(rest.length ? sql`${nodes.labels} ->> ${key!} = ${rest.join('=')}` : sql`${nodes.labels} ? ${key!}`);
	}
	if (scope.roles?.length) where.push(or(...scope.roles.map((r) => sql`${r} = any(${nodes.roles})`))!);
	return where;
}

export async function buildPlan(scope: UpdateScope = {}, concurrency = DEFAULT_UPDATE_CONCURRENCY): Promise<Plan> {
	const roleFilter = scope.roles?.length ? await assertRolesExist(scope.roles, 'scope.roles') : undefined;
	const allRoles: CodeRole[] = roleFilter ?? (await db().select().from(codeRoles));
	const byName = new Map(allRoles.map((r) => [r.name, r]));
	const candidates: Node[] = await db()
		.select()
		.from(nodes)
		.where(and(...scopeConditions(scope)))
		.orderBy(asc(nodes.name));
	if (scope.nodes?.length) {
		const found = new Set(candidates.flatMap((n) => [n.id, n.name]));
		const missing = scope.nodes.filter((n) => !found.has(n));
		if (missing.length) {
			throw new ServiceError('validation_failed', `Unknown node: ${missing.join(', ')}`, {
				'scope.nodes': `no node ${missing.join(', ')}`
			});
		}
	}
	const versions = await versionsFor(candidates);
	const plan: Plan = {
		targets: {},
		signatures_required: [],
		unknown_targets: [],
		nodes: [],
		phases: [],
		excluded: [],
		concurrency,
		scope
	};
	for (const node of candidates) {
		const behind = (versions.get(node.id) ?? []).filter((v) => byName.get(v.role) && v.latest && v.behind);
		if (node.hostKeyStatus !== 'pinned') {
			const why = node.hostKeyStatus === 'changed' ? 'its host key changed' : 'its host key is not accepted yet';
			if (behind.length) plan.excluded.push({ id: node.id, name: node.name, reason: `not updated: ${why}` });
			continue;
		}
		if (!behind.length) {
			plan.excluded.push({ id: node.id, name: node.name, reason: 'up to date' });
			continue;
		}
		// Known to be down: its task could only fail. The health sweep notices when it is back.
		if (node.reachable === false) {
			plan.excluded.push({
				id: node.id,
				name: node.name,
				reason: `not updated: unreachable at the last check (${node.lastError ?? 'no answer'})`
			});
			continue;
		}
		const roles = behind
			.map((v) => ({ role: v.role, from: v.commit, to: v.latest!, order: byName.get(v.role)!.sortOrder }))
			.sort((a, b) => a.order - b.order || a.role.localeCompare(b.role))
			.map(({ role, from, to }) => ({ role, from, to }));
		for (const r of roles) plan.targets[r.role] = r.to;
		plan.nodes.push({
			id: node.id,
			name: node.name,
			address: `${node.host}:${node.port}`,
			control_plane: node.controlPlane,
			phase: node.controlPlane ? 0 : 1,
			roles,
			warning: node.reachable === null ? 'never checked: the console has not reached it yet' : null
		});
	}
	plan.nodes.sort((a, b) => a.phase - b.phase || a.name.localeCompare(b.name));
	plan.signatures_required = Object.keys(plan.targets)
		.filter((r) => byName.get(r)?.signatures)
		.sort();
	plan.unknown_targets = await unknownTargets(plan.targets, byName);
	const cp = plan.nodes.filter((n) => n.phase === 0).length;
	if (cp) plan.phases.push({ phase: 0, label: 'Control plane first', nodes: cp, critical: true });
	if (plan.nodes.length - cp)
		plan.phases.push({ phase: 1, label: 'Fleet', nodes: plan.nodes.length - cp, critical: false });
	return plan;
}

/**
 * The targets known not to be there: a push role's commit its console checkout does not hold, and a git role's
 * commit that the last fetch on a node (whose remote the console cannot ask) did not bring.
 */
async function unknownTargets(
	targets: Record<string, string>,
	byName: Map<string, CodeRole>
): Promise<Plan['unknown_targets']> {
	const unknown: Plan['unknown_targets'] = [];
	for (const [role, commit] of Object.entries(targets).sort(([a], [b]) => a.localeCompare(b))) {
		const defined = byName.get(role);
		if (!defined) continue;
		const reason =
			defined.method === 'push'
				? await missingInConsole(defined, commit)
				: defined.method === 'git'
					? await missingOnNodes(defined, commit)
					: null;
		if (reason) unknown.push({ role, commit, reason });
	}
	return unknown;
}

export type TriggerInput = z.infer<typeof triggerSchema>;

/** "app-11 (not updated: unreachable), app-15 (…)", at most three named. */
function describeLeftOut(leftOut: Plan['excluded']): string {
	const named = leftOut.slice(0, 3).map((e) => `${e.name} (${e.reason})`);
	const more = leftOut.length > 3 ? ` and ${leftOut.length - 3} more` : '';
	return `${named.join(', ')}${more}`;
}

/**
 * `POST /api/updates/trigger`: the plan for a dry run, otherwise a code-sync run with control-plane nodes
 * as a first, critical phase. Refused when nothing is behind, when a role moved since the operator saw the
 * plan (`expect`), or when another Code Sync run still covers some of the nodes.
 */
export async function triggerUpdate(actor: Actor, input: TriggerInput): Promise<{ plan: Plan; runId: string | null }> {
	const plan = await buildPlan(input.scope ?? {}, input.concurrency ?? DEFAULT_UPDATE_CONCURRENCY);
	if (input.dry_run) return { plan, runId: null };
	if (!plan.nodes.length) {
		const leftOut = plan.excluded.filter((e) => e.reason !== 'up to date');
		throw leftOut.length
			? new ServiceError('conflict', `Nothing can be updated now: ${describeLeftOut(leftOut)}`, {
					scope: 'every node in scope that is behind is left out'
				})
			: new ServiceError('conflict', 'Nothing to update: every node in scope runs its roles’ latest commits', {
					scope: 'no node in scope is behind'
				});
	}
	for (const [role, commit] of Object.entries(input.expect ?? {})) {
		const now = plan.targets[role];
		if (now && !now.startsWith(commit) && !commit.startsWith(now)) {
			throw new ServiceError('conflict', `Role ${role} moved to ${now.slice(0, 12)} since the plan was shown`, {
				expect: `${role} is now at ${now}; review the plan again`
			});
		}
	}
	const phaseOf = new Map(plan.nodes.map((n) => [n.id, n.phase]));
	const run = await createRun(actor, {
		kind: 'code-sync',
		title: planTitle(plan),
		nodeIds: plan.nodes.map((n) => n.id),
		params: { targets: plan.targets },
		scope: { ...(input.scope ?? {}) },
		options: {
			concurrency: plan.concurrency,
			criticalPhases: plan.phases.filter((p) => p.critical).map((p) => p.phase),
			...(input.max_failure_percent !== undefined ? { maxFailurePercent: input.max_failure_percent } : {}),
			...(input.max_failures !== undefined ? { maxFailures: input.max_failures } : {}),
			...(input.stop_on_first_failure ? { stopOnFirstFailure: true } : {})
		},
		phaseOf: (id) => phaseOf.get(id) ?? 1,
		// Another Code Sync run still on some of these nodes refuses this one (409), atomically.
		exclusive: true
	});
	return { plan, runId: run.id };
}

/** What the plan does, in a few words: the plan dialog's heading and the run's title. */
export function planTitle(plan: Plan): string {
	const { scope } = plan;
	if (scope.nodes?.length === 1) return `Update ${plan.nodes[0]?.name ?? plan.excluded[0]?.name ?? 'this node'}`;
	if (scope.nodes?.length) return `Update ${scope.nodes.length} nodes`;
	if (scope.roles?.length) return `Update ${scope.roles.join(', ')}`;
	if (scope.labels?.length) return `Update nodes labelled ${scope.labels.join(', ')}`;
	return 'Update All';
}
