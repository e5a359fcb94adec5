import { desc, eq } from 'drizzle-orm';
import { db } from '$lib/server/db';
import {
	applianceBadReleases,
	applianceImages,
	applianceSlots,
	applianceUpdates,
	nodes,
	releases,
	type ApplianceSlots,
	type Node
} from '$lib/server/db/schema';
import { recordEvent, runNumbers, type StepContext } from '$lib/server/engine';
import { notFound } from '$lib/server/errors';
import type { SweepInspector } from '$lib/server/fleet/sweep';
import { sh } from '$lib/server/ssh/shell';
import { recordSweptFallback } from './fallbacks';
import { presentUpdate } from './records';
import { parseReport, run, type SlotReport } from './remote';

/*
 * What the console knows of one appliance's slots (docs/appliances.md, "The appliance's page"): the last
 * `flotilla-slot report` it read — by the A/B flow at each step that asks, and by the health sweep between
 * updates, so a fallback or a boot-gate result the appliance reached on its own shows up too.
 */

/** Keeps a report as the appliance's slots, and tells the pages (`appliance.slots` on /api/events). */
export async function recordSlots(node: Pick<Node, 'id' | 'name'>, report: SlotReport): Promise<void> {
	const [before] = await db().select().from(applianceSlots).where(eq(applianceSlots.nodeId, node.id));
	const gate = report.lastGate;
	const gateText = (g: { slot: string | null; passed: boolean | null; checks: string[] | null }) =>
		`${g.slot} ${g.passed} ${(g.checks ?? []).join(' ')}`;
	const sameGate =
		before &&
		gate &&
		gateText({ slot: before.gateSlot, passed: before.gatePassed, checks: before.gateFailedChecks }) ===
			gateText({ slot: gate.slot, passed: gate.passed, checks: gate.failedChecks });
	const values = {
		active: report.active,
		next: report.next,
		good: report.good,
		tries: report.tries,
		boots: report.boots,
		fallback: report.fallback || null,
		skipWindow: report.skipWindow,
		slotA: report.verified.a || null,
		slotB: report.verified.b || null,
		gateSlot: gate?.slot ?? null,
		gatePassed: gate?.passed ?? null,
		gateFailedChecks: gate?.failedChecks ?? null,
		// The appliance does not stamp its gate: the time is when the console first saw this outcome.
		gateSeenAt: gate ? (sameGate ? before.gateSeenAt : new Date()) : null,
		reportedAt: new Date()
	};
	await db()
		.insert(applianceSlots)
		.values({ nodeId: node.id, ...values })
		.onConflictDoUpdate({ target: applianceSlots.nodeId, set: values });
	await recordEvent({ type: 'appliance.slots', nodeId: node.id, data: { node: node.name } });
}

/** A task's look at its appliance's slots (`flotilla-slot report`), kept as the appliance's slots. */
export async function readSlots<P>(ctx: StepContext<P>): Promise<SlotReport> {
	const found = parseReport((await run(ctx, sh`flotilla-slot report`)).stdout);
	await recordSlots(ctx.node, found);
	return found;
}

/** `<sha256> <version>` as the slot helper keeps a verified image. */
function slotImage(text: string | null) {
	if (!text) return null;
	const [sha256 = '', version = ''] = text.split(' ');
	return { sha256, version };
}

export const presentSlots = (s: ApplianceSlots) => ({
	active: s.active,
	next: s.next,
	good: s.good,
	tries: s.tries,
	boots: s.boots,
	fallback: s.fallback,
	skip_window: s.skipWindow,
	slots: (['a', 'b'] as const).map((slot) => ({
		slot,
		active: s.active === slot,
		next_boot: s.next === slot,
		good: s.good === slot,
		image: slotImage(slot === 'a' ? s.slotA : s.slotB)
	})),
	last_gate:
		s.gateSlot === null
			? null
			: {
					slot: s.gateSlot,
					passed: s.gatePassed,
					failed_checks: s.gateFailedChecks ?? [],
					seen_at: s.gateSeenAt?.toISOString() ?? null
				},
	reported_at: s.reportedAt.toISOString()
});

/** How many of an appliance's updates are shown: its history beyond that stays in the runs. */
const UPDATES_SHOWN = 50;

/** `GET /api/nodes/{id}/appliance`: the slots, the updates with their runs, and the fallbacks (none for a server). */
export async function applianceOverview(nodeId: string) {
	const [node] = await db().select().from(nodes).where(eq(nodes.id, nodeId));
	if (!node) throw notFound('Node');
	const [slots] = await db().select().from(applianceSlots).where(eq(applianceSlots.nodeId, nodeId));
	const updates = await db()
		.select({ update: applianceUpdates, version: releases.version })
		.from(applianceUpdates)
		.innerJoin(applianceImages, eq(applianceImages.id, applianceUpdates.imageId))
		.innerJoin(releases, eq(releases.id, applianceImages.releaseId))
		.where(eq(applianceUpdates.nodeId, nodeId))
		.orderBy(desc(applianceUpdates.startedAt))
		.limit(UPDATES_SHOWN);
	const numbers = await runNumbers([...new Set(updates.map((u) => u.update.runId))]);
	const marks = await db()
		.select({ mark: applianceBadReleases, version: releases.version })
		.from(applianceBadReleases)
		.innerJoin(releases, eq(releases.id, applianceBadReleases.releaseId))
		.where(eq(applianceBadReleases.nodeName, node.name))
		.orderBy(desc(applianceBadReleases.createdAt));
	return {
		// A server has no slots: its answer says so by its kind, with nothing else in it.
		node: { id: node.id, name: node.name, kind: node.kind, labels: node.labels },
		slots: slots ? presentSlots(slots) : null,
		updates: updates.map(({ update, version }) => ({
			...presentUpdate(update, node.name),
			version,
			run_number: numbers.get(update.runId) ?? null
		})),
		// Fallbacks the console recorded for this appliance: each update that came back on the good slot by the
		// appliance's own logic, and the release marks it left.
		fallbacks: updates
			.filter(({ update }) => update.fallback)
			.map(({ update, version }) => ({
				run_id: update.runId,
				run_number: numbers.get(update.runId) ?? null,
				version,
				reason: update.fallback!,
				at: update.updatedAt.toISOString()
			})),
		bad_releases: marks.map(({ mark, version }) => ({
			id: mark.id,
			version,
			hardware: mark.hardware,
			reason: mark.reason,
			created_at: mark.createdAt.toISOString(),
			cleared_at: mark.clearedAt?.toISOString() ?? null
		}))
	};
}

/** The health sweep's look at appliances: their slot report, kept as above. */
export const applianceSlotsInspector: SweepInspector = {
	counts: ['appliances_fallen_back', 'appliance_fallbacks_recorded'],
	async begin() {
		return async (conn, node): Promise<Record<string, number>> => {
			if (node.kind !== 'appliance') return {};
			const result = await conn.exec(sh`flotilla-slot report`, { deadlineMs: 15_000 });
			// An appliance without the helper installed yet has nothing to report.
			if (result.exitCode !== 0) return {};
			let report: SlotReport;
			try {
				report = parseReport(result.stdout);
			} catch {
				return {};
			}
			await recordSlots(node, report);
			const recorded = await recordSweptFallback(node, report);
			return { appliances_fallen_back: report.fallback ? 1 : 0, appliance_fallbacks_recorded: recorded ? 1 : 0 };
		};
	}
};
