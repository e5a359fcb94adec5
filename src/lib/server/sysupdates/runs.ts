import { inArray } from 'drizzle-orm';
import type { NodeUpdateRequest, ScanRequest } from '$lib/schemas/system-updates';
import { recordAudit, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes, sysPendingPackages, type Node, type Run } from '$lib/server/db/schema';
import { createRun } from '$lib/server/engine';
import { conflict, ServiceError } from '$lib/server/errors';
import type { Soak } from './policy';
import { scanFlow } from './scan';
import { stagedPhases } from './stages';
import { updateFlow, type UpdateParams } from './update';
import { pinnedNodes, resolveNodes } from './targets';
import { planFromLastScan } from './views';

/** Nodes scanned at once: a scan mostly waits on apt, so more than an update's default. */
export const SCAN_CONCURRENCY = 20;

/** A scan of the named nodes (every node with a pinned host key when none are named). */
export async function startScan(
	actor: Actor,
	input: ScanRequest,
	opts: { commandTimeoutSeconds?: number } = {}
): Promise<Run> {
	const list = input.nodes ? await resolveNodes(input.nodes) : await pinnedNodes();
	if (!list.length) throw conflict('No node has a pinned host key yet: accept one in Settings → Nodes first.');
	const unpinned = list.filter((n) => n.hostKeyStatus !== 'pinned');
	if (unpinned.length) {
		throw new ServiceError('validation_failed', `No pinned host key for ${unpinned.map((n) => n.name).join(', ')}`, {
			nodes: `${unpinned[0]!.name} has no pinned host key`
		});
	}
	const run = await createRun(actor, {
		kind: scanFlow.kind,
		title:
			list.length === 1 ? `Scan ${list[0]!.name} for system updates` : `Scan ${list.length} nodes for system updates`,
		nodeIds: list.map((n) => n.id),
		params: { refresh: input.refresh, ...opts },
		options: { concurrency: SCAN_CONCURRENCY }
	});
	await recordAudit(actor, {
		action: 'system_updates.scan',
		targetType: 'run',
		targetId: run.id,
		details: { nodes: list.length }
	});
	return run;
}

export interface UpdateOptions {
	/** Share of a role's nodes that may reboot at once (at least one node). */
	rebootShare?: number;
	lockTimeoutSeconds?: number;
	rebootTimeoutSeconds?: number;
	applyTimeoutSeconds?: number;
	automatic?: boolean;
	rebootOnly?: boolean;
	soak?: Soak;
	insideWindow?: (node: Node) => boolean;
	concurrency?: number;
	/** Per node id, the packages (and versions) the operator approved: each node's update applies nothing else. */
	approved?: Record<string, { name: string; candidate: string }[]>;
}

/**
 * A system update of the given nodes, each per its policy (or forced). Role-aware: its phases never take more
 * than `rebootShare` of a role's nodes (at least one) at once, and control-plane nodes go last, one at a time.
 * `opts.approved` pins, per node, the plan the operator saw: that node's update refuses anything else.
 */
export async function startUpdate(
	actor: Actor,
	list: Node[],
	request: NodeUpdateRequest,
	opts: UpdateOptions = {}
): Promise<Run> {
	if (!list.length) throw new ServiceError('validation_failed', 'No node to update', { nodes: 'empty' });
	const unpinned = list.find((n) => n.hostKeyStatus !== 'pinned');
	if (unpinned) throw conflict(`${unpinned.name} has no pinned host key: accept it in Settings → Nodes first.`);
	if (request.packages && list.length === 1) {
		const pending = await db()
			.select({ name: sysPendingPackages.name })
			.from(sysPendingPackages)
			.where(inArray(sysPendingPackages.nodeId, [list[0]!.id]));
		const unknown = request.packages.filter((p) => !pending.some((q) => q.name === p));
		if (unknown.length) {
			throw new ServiceError('validation_failed', `Not pending on ${list[0]!.name}: ${unknown.join(', ')}`, {
				packages: `${unknown[0]} is not pending on this node (scan it first)`
			});
		}
	}
	const roleSizes = new Map<string, number>();
	const all = await db().select({ roles: nodes.roles }).from(nodes);
	for (const n of all) for (const r of n.roles) roleSizes.set(r, (roleSizes.get(r) ?? 0) + 1);
	const staged = stagedPhases(list, [], opts.rebootShare ?? 0, roleSizes);
	const phases = staged.phaseOf;
	const base: Partial<UpdateParams> = {
		forceFull: request.force_full,
		packages: request.packages,
		reboot: request.reboot,
		automatic: opts.automatic ?? false,
		rebootOnly: opts.rebootOnly,
		soakDays: opts.soak?.days,
		soakSecurityExempt: opts.soak?.securityExempt,
		lockTimeoutSeconds: opts.lockTimeoutSeconds,
		rebootTimeoutSeconds: opts.rebootTimeoutSeconds,
		applyTimeoutSeconds: opts.applyTimeoutSeconds,
		approved: opts.approved
	};
	// One run, one set of parameters: the window is per node, so a run covers nodes on the same side of theirs.
	const inside = list.map((n) => opts.insideWindow?.(n) ?? false);
	if (inside.some((v) => v !== inside[0])) throw new Error('startUpdate: nodes on both sides of their windows');
	const run = await createRun(actor, {
		kind: updateFlow.kind,
		title: list.length === 1 ? `System update of ${list[0]!.name}` : `System update of ${list.length} nodes`,
		nodeIds: list.map((n) => n.id),
		params: Object.fromEntries(Object.entries({ ...base, insideWindow: inside[0] }).filter(([, v]) => v !== undefined)),
		phaseOf: (id) => phases.get(id) ?? 0,
		options: {
			concurrency: opts.concurrency ?? 20,
			// A control-plane node that fails stops everything after it.
			criticalPhases: staged.criticalPhases
		},
		exclusive: true
	});
	await recordAudit(actor, {
		action: 'system_updates.apply',
		targetType: 'run',
		targetId: run.id,
		details: {
			nodes: list.map((n) => n.name),
			force_full: request.force_full,
			packages: request.packages ?? null,
			reboot: request.reboot ?? null,
			automatic: opts.automatic ?? false,
			reboot_only: opts.rebootOnly ?? false
		}
	});
	return run;
}

/**
 * `POST /api/updates/system/{node_id}`: one node, by id or name. The plan its last scan gives is pinned in the
 * run: when the node offers anything else by the time its update starts, that update refuses to apply it.
 */
export async function startNodeUpdate(
	actor: Actor,
	nodeRef: string,
	request: NodeUpdateRequest,
	opts: UpdateOptions = {}
): Promise<Run> {
	const [node] = await resolveNodes([nodeRef], 'node_id').catch((err: unknown) => {
		if (err instanceof ServiceError) throw new ServiceError('not_found', err.message, err.fields);
		throw err;
	});
	const plan = await planFromLastScan(node!, request);
	return startUpdate(actor, [node!], request, { ...opts, approved: { [node!.id]: plan.candidates } });
}
