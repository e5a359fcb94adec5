import { rebootPhases } from './reboots';

/**
 * Staged patching (docs/system-updates.md, "Staged patching"): the nodes that carry the first label of the
 * order go first, then those with the second, then the rest; a failure in a stage stops every later one, so
 * a bad package reaches production only after it has been through the earlier stages. Within a stage the
 * reboot rules hold (a share of each role at a time); control-plane nodes still come last, one at a time.
 */

type Member = { id: string; roles: string[]; labels: Record<string, string>; controlPlane: boolean };

export interface Stage {
	/** The label (`key=value`) of the stage; null for the rest of the fleet, and for the control plane. */
	label: string | null;
	controlPlane: boolean;
	nodeIds: string[];
	/** Whether a failure in it stops what comes after. */
	critical: boolean;
}

export interface StagedPlan {
	phaseOf: Map<string, number>;
	criticalPhases: number[];
	stages: Stage[];
}

/** The index of the first label of `order` the node carries; `order.length` when it carries none. */
export function stageOf(node: Pick<Member, 'labels'>, order: string[]): number {
	const i = order.findIndex((l) => {
		const eq = l.indexOf('=');
		return node.labels[l.slice(0, eq)] === l.slice(eq + 1);
	});
	return i < 0 ? order.length : i;
}

export function stagedPhases(
	list: Member[],
	order: string[],
	share: number,
	roleSizes: Map<string, number>
): StagedPlan {
	const phaseOf = new Map<string, number>();
	const criticalPhases: number[] = [];
	const stages: Stage[] = [];
	let offset = 0;
	const place = (members: Member[], critical: boolean) => {
		const phases = rebootPhases(members, share, roleSizes);
		let span = 0;
		for (const [id, p] of phases) {
			phaseOf.set(id, offset + p);
			span = Math.max(span, p + 1);
		}
		if (critical) for (let p = 0; p < span; p++) criticalPhases.push(offset + p);
		offset += span;
	};
	const fleet = list.filter((n) => !n.controlPlane);
	for (let s = 0; s <= order.length; s++) {
		const members = fleet.filter((n) => stageOf(n, order) === s);
		if (!members.length) continue;
		// The last stage stops nothing after it but the control plane, which stops on its own failures.
		const critical = s < order.length;
		stages.push({ label: order[s] ?? null, controlPlane: false, nodeIds: members.map((n) => n.id), critical });
		place(members, critical);
	}
	const control = list.filter((n) => n.controlPlane);
	if (control.length) {
		stages.push({ label: null, controlPlane: true, nodeIds: control.map((n) => n.id), critical: true });
		place(control, true);
	}
	return { phaseOf, criticalPhases, stages };
}
