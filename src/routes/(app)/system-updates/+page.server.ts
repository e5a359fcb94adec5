import { fail, redirect, type ActionFailure } from '@sveltejs/kit';
import { iso } from '$lib/format';
import {
	applyFormSchema,
	scanFormSchema,
	scheduleFormSchema,
	skipFormSchema,
	windowFormSchema,
	windowIdFormSchema
} from '$lib/schemas/system-updates-forms';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm, type FormFailure } from '$lib/server/http/forms';
import { listHolds } from '$lib/server/sysupdates/holds';
import { config } from '$lib/server/config';
import { saveScanSchedule, scanSchedule } from '$lib/server/sysupdates/schedule';
import { startScan, startUpdate } from '$lib/server/sysupdates/runs';
import { listStagedUpdates, startStagedUpdate } from '$lib/server/sysupdates/staged';
import { stagedPhases } from '$lib/server/sysupdates/stages';
import { pinnedNodes, resolveNodes } from '$lib/server/sysupdates/targets';
import { planFromLastScan, presentNodeUpdates, systemUpdatesView } from '$lib/server/sysupdates/views';
import { automaticWork, workSeconds } from '$lib/server/sysupdates/window-fit';
import {
	deleteWindow,
	listWindows,
	presentWindow,
	saveWindow,
	skipNextWindow,
	windowFor,
	windowShortfall
} from '$lib/server/sysupdates/windows';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async (event) => {
	event.depends('app:system-updates');
	const cfg = config();
	const [view, windows, holds, schedule, staged] = await Promise.all([
		systemUpdatesView(),
		listWindows(),
		listHolds(),
		scanSchedule({ cron: cfg.systemScanCron, timeZone: cfg.systemScanTimeZone }),
		listStagedUpdates()
	]);
	const now = new Date();
	const canOperate = authorize(event.route.id, 'POST', '?/apply', principalOf(event)).allow;
	const canAdmin = authorize(event.route.id, 'POST', '?/saveWindow', principalOf(event)).allow;
	const nameOf = new Map(view.map((v) => [v.node.id, v.node.name]));
	return {
		canOperate,
		canAdmin,
		schedule,
		staged,
		windows: windows.map((w) => {
			const p = presentWindow(w);
			return {
				...p,
				// A node's window names its node by id: the page shows its name.
				target: w.scope === 'node' ? (nameOf.get(w.target) ?? w.target) : w.target,
				skip_until: iso(p.skip_until),
				next: p.next ? { opens: iso(p.next.opens), closes: iso(p.next.closes) } : null
			};
		}),
		nodes: view.map((v) => {
			const p = presentNodeUpdates(v);
			const w = windowFor(v.node, windows);
			const work = automaticWork(v.policy.policy, p.pending_count, p.reboot_required);
			const short = w && (work.packages || work.mayReboot) ? windowShortfall(w, workSeconds(work), now) : null;
			return {
				...p,
				last_scan: iso(p.last_scan),
				last_error_at: iso(p.last_error_at),
				// Why its last system update failed (a drift from the approved plan says what changed); automatic
				// updates leave the node alone until an operator's update of it succeeds.
				update_error: v.scan?.updateError ?? null,
				window: w ? { ...presentWindow(w), skip_until: iso(w.skipUntil), too_short: short } : null,
				holds: holds
					.filter(
						(h) =>
							(h.scope === 'node' && h.target === v.node.id) || (h.scope === 'role' && v.node.roles.includes(h.target))
					)
					.map((h) => `${h.pattern} (${h.scope === 'node' ? 'this node' : `role ${h.target}`})`)
			};
		})
	};
};

/**
 * The window and schedule forms share API field names (`time_zone`): a failure says which form it answers, so
 * its errors and echoed values land on that form's fields only.
 */
function fromForm(source: 'window' | 'schedule', failure: ActionFailure<FormFailure>) {
	return fail(failure.status, { ...failure.data, source });
}

/** Per ticked node, the packages the confirmed dialog showed for it (none shown: nothing may be installed). */
function approvedPlans(
	list: { id: string }[],
	approved: { node: string; name: string; candidate: string }[]
): Record<string, { name: string; candidate: string }[]> {
	return Object.fromEntries(
		list.map((n) => [
			n.id,
			approved.filter((a) => a.node === n.id).map((a) => ({ name: a.name, candidate: a.candidate }))
		])
	);
}

export const actions: Actions = {
	/** Creates the window of a node, role or label, or replaces the one it had. */
	saveWindow: async (event) => {
		const parsed = await parseForm(event.request, windowFormSchema);
		if (!parsed.ok) return fromForm('window', parsed.failure);
		try {
			const w = await saveWindow(actorOf(event), parsed.data);
			return { notice: `Saved the maintenance window of ${w.scope} ${parsed.data.target}.` };
		} catch (err) {
			return fromForm('window', formError(err, parsed.form));
		}
	},

	saveSchedule: async (event) => {
		const parsed = await parseForm(event.request, scheduleFormSchema);
		if (!parsed.ok) return fromForm('schedule', parsed.failure);
		await saveScanSchedule(actorOf(event), parsed.data);
		return {
			notice:
				parsed.data.cron === 'off'
					? 'The fleet is no longer scanned on a schedule.'
					: `The fleet is scanned at ${parsed.data.cron} (${parsed.data.time_zone}).`
		};
	},

	deleteWindow: async (event) => {
		const parsed = await parseForm(event.request, windowIdFormSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			await deleteWindow(actorOf(event), parsed.data.id);
			return { notice: 'Deleted the maintenance window.' };
		} catch (err) {
			return formError(err);
		}
	},

	skipWindow: async (event) => {
		const parsed = await parseForm(event.request, skipFormSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			await skipNextWindow(actorOf(event), parsed.data.id, parsed.data.skip);
			return { notice: parsed.data.skip ? 'The next opening of the window is skipped.' : 'The window opens again.' };
		} catch (err) {
			return formError(err);
		}
	},

	/** Scans the ticked nodes, or every node with a pinned host key when none is ticked. */
	scan: async (event) => {
		const parsed = await parseForm(event.request, scanFormSchema);
		if (!parsed.ok) return parsed.failure;
		let runId: string;
		try {
			const list = parsed.data.nodes.length ? parsed.data.nodes : (await pinnedNodes()).map((n) => n.id);
			runId = (await startScan(actorOf(event), { nodes: list.length ? list : undefined, refresh: true })).id;
		} catch (err) {
			return formError(err, parsed.form);
		}
		redirect(303, `/runs/${runId}`);
	},

	/**
	 * Updates or reboots the ticked nodes. Without `confirm` it answers the plan (per node, what would be installed
	 * and whether it reboots) for the confirmation dialog; with it, the run starts and the page goes to it.
	 */
	apply: async (event) => {
		const parsed = await parseForm(event.request, applyFormSchema);
		if (!parsed.ok) return parsed.failure;
		const { mode, confirm, stages, soak_hours } = parsed.data;
		try {
			const list = await resolveNodes(parsed.data.nodes);
			const request = {
				force_full: mode === 'force_full',
				reboot: mode === 'reboot' ? ('now' as const) : undefined
			};
			if (!confirm) {
				const plans = await Promise.all(list.map((n) => planFromLastScan(n, request)));
				const nameOf = new Map(list.map((n) => [n.id, n.name]));
				return {
					plan: {
						mode,
						stages: stages.length
							? stagedPhases(list, stages, 0, new Map()).stages.map((st) => ({
									label: st.controlPlane ? 'control plane' : (st.label ?? 'the rest'),
									nodes: st.nodeIds.map((id) => nameOf.get(id)!),
									critical: st.critical
								}))
							: [],
						order: stages,
						soak_hours,
						nodes: list.map((n, i) => ({
							id: n.id,
							name: n.name,
							policy: plans[i]!.policy,
							packages: mode === 'reboot' ? [] : plans[i]!.candidates,
							held: plans[i]!.held,
							reboot: mode === 'reboot' ? 'now' : plans[i]!.reboot,
							reason: mode === 'reboot' ? null : plans[i]!.reason
						}))
					}
				};
			}
			// Staged: the first stage's run starts now, the later ones after their soak (sysupdates/staged.ts), each
			// node held to the plan this dialog showed however many hours later its stage runs.
			const runId = stages.length
				? (
						await startStagedUpdate(actorOf(event), list, request, {
							order: stages,
							soakHours: soak_hours,
							rebootOnly: mode === 'reboot',
							approved: mode === 'reboot' ? undefined : approvedPlans(list, parsed.data.approved)
						})
					).firstRunId
				: (
						await startUpdate(actorOf(event), list, request, {
							rebootOnly: mode === 'reboot',
							// Each node is held to the plan its dialog showed (a reboot installs nothing to pin).
							approved: mode === 'reboot' ? undefined : approvedPlans(list, parsed.data.approved)
						})
					).id;
			redirect(303, `/runs/${runId}`);
		} catch (err) {
			return formError(err, parsed.form);
		}
	}
};
