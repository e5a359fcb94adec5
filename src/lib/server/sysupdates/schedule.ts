import { and, eq, inArray, isNull, sql } from 'drizzle-orm';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes, sysNodeScans, sysSchedules } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { log, loggableError } from '$lib/server/log';
import { lastFiring, parseCron } from '$lib/clock';
import { rebootsNow, type Soak } from './policy';
import { policiesOf } from './role-policies';
import { startScan, startUpdate } from './runs';
import { planFromLastScan } from './views';
import { shortfall, workSeconds, type WindowShortfall } from './window-fit';
import { nodeInsideWindow, windowClosesAfter, windowsOf } from './windows';

const SCAN_SCHEDULE = 'system-scan';

/**
 * The console's own System Updates work, run every minute by one console (docs/system-updates.md, "Schedule
 * and windows"): the fleet scan when its cron fires, and inside each node's maintenance window the updates
 * its policy allows (full: everything pending; full and security: a pending reboot). A node whose last update
 * failed is left alone until an operator looks.
 */
export async function runScheduledSystemUpdates(opts: {
	cron: string | null;
	timeZone: string;
	soak?: Soak;
	now?: Date;
}): Promise<{ scanRunId: string | null; updateRunIds: string[]; tooShort: TooShort[] }> {
	const now = opts.now ?? new Date();
	let scanRunId: string | null = null;
	const { cron, timeZone } = await scanSchedule(opts);
	if (cron && (await claimFiring(parseCron(cron), timeZone, now))) {
		try {
			scanRunId = (await startScan(systemActor, { refresh: true })).id;
		} catch (err) {
			if (!(err instanceof ServiceError)) throw err;
			log.info({ reason: err.message }, 'scheduled system update scan not started');
		}
	}
	return { scanRunId, ...(await applyInsideWindows(now, opts.soak ?? { days: 0, securityExempt: true })) };
}

/** A node left alone because what is left of its window cannot hold its update. */
export interface TooShort extends WindowShortfall {
	node: string;
}

/** The fleet scan's schedule: an admin's, set on the page, else the configured one. */
export async function scanSchedule(configured: {
	cron: string | null;
	timeZone: string;
}): Promise<{ cron: string | null; timeZone: string; setOnPage: boolean }> {
	const [row] = await db().select().from(sysSchedules).where(eq(sysSchedules.name, SCAN_SCHEDULE));
	if (!row?.cron) return { ...configured, setOnPage: false };
	return { cron: row.cron === 'off' ? null : row.cron, timeZone: row.timeZone ?? configured.timeZone, setOnPage: true };
}

/** Sets the fleet scan's schedule (`off`: none); it counts from now, so a changed cron does not fire at once. */
export async function saveScanSchedule(actor: Actor, input: { cron: string; time_zone: string }): Promise<void> {
	const values = { cron: input.cron, timeZone: input.time_zone };
	await db()
		.insert(sysSchedules)
		.values({ name: SCAN_SCHEDULE, lastFiredAt: new Date(), ...values })
		.onConflictDoUpdate({ target: sysSchedules.name, set: { ...values, lastFiredAt: new Date() } });
	await recordAudit(actor, {
		action: 'system_updates.schedule',
		targetType: 'schedule',
		targetId: SCAN_SCHEDULE,
		details: values
	});
}

/** True for exactly one console when the cron fired since the last claim (compare-and-set on the row). */
async function claimFiring(cron: ReturnType<typeof parseCron>, timeZone: string, now: Date): Promise<boolean> {
	const [row] = await db().select().from(sysSchedules).where(eq(sysSchedules.name, SCAN_SCHEDULE));
	if (!row) {
		// First start: the schedule counts from now, so a console started at 02:30 does not scan at once.
		await db().insert(sysSchedules).values({ name: SCAN_SCHEDULE, lastFiredAt: now }).onConflictDoNothing();
		return false;
	}
	const due = lastFiring(cron, timeZone, row.lastFiredAt, now);
	if (!due) return false;
	const claimed = await db()
		.update(sysSchedules)
		.set({ lastFiredAt: due })
		.where(and(eq(sysSchedules.name, SCAN_SCHEDULE), eq(sysSchedules.lastFiredAt, row.lastFiredAt)))
		.returning();
	return claimed.length === 1;
}

async function applyInsideWindows(now: Date, soak: Soak): Promise<{ updateRunIds: string[]; tooShort: TooShort[] }> {
	const candidates = await db()
		.select({ node: nodes })
		.from(nodes)
		.innerJoin(sysNodeScans, eq(sysNodeScans.nodeId, nodes.id))
		.where(
			and(
				eq(nodes.hostKeyStatus, 'pinned'),
				isNull(sysNodeScans.updateError),
				sql`(${sysNodeScans.pendingCount} > 0 or ${sysNodeScans.rebootRequired})`
			)
		);
	// A node's policy may be its roles' default: manual nodes are left out once it is resolved.
	const policies = await policiesOf(candidates.map((c) => c.node));
	if (!candidates.length) return { updateRunIds: [], tooShort: [] };
	const windows = await windowsOf(candidates.map((c) => c.node));
	const full = [];
	const rebootOnly = [];
	const tooShort: TooShort[] = [];
	for (const { node } of candidates) {
		const policy = policies.get(node.id)!.policy;
		if (policy === 'manual') continue;
		const window = windows.get(node.id) ?? null;
		if (!window || !nodeInsideWindow(window, now)) continue;
		const [scan] = await db()
			.select()
			.from(sysNodeScans)
			.where(inArray(sysNodeScans.nodeId, [node.id]));
		const plan = await planFromLastScan(node, { force_full: false }, soak);
		const reboot = rebootsNow(plan.reboot, scan!.rebootRequired, true);
		const installs = policy === 'full' ? plan.packages.length : 0;
		const short = shortfall(
			workSeconds({ packages: installs, mayReboot: reboot || installs > 0 }),
			now,
			windowClosesAfter(window, now)!
		);
		if (short && (installs || reboot)) {
			// Reported, never overrun: the work waits for an opening long enough to hold it.
			tooShort.push({ node: node.name, ...short });
			log.info({ node: node.name, ...short }, 'system update left for a longer window');
			continue;
		}
		// Security updates outside a full policy wait for an operator; their reboot is the window's to do.
		if (policy === 'full' && (plan.packages.length || reboot)) full.push(node);
		else if (reboot) rebootOnly.push(node);
	}
	const started: string[] = [];
	for (const [list, only] of [
		[full, false],
		[rebootOnly, true]
	] as const) {
		if (!list.length) continue;
		try {
			const run = await startUpdate(
				systemActor,
				list,
				{ force_full: false },
				{ automatic: true, rebootOnly: only, soak, insideWindow: () => true }
			);
			started.push(run.id);
		} catch (err) {
			// A run still on some of these nodes: the next minute tries again.
			log.info({ err: loggableError(err) }, 'automatic system update not started');
		}
	}
	return { updateRunIds: started, tooShort };
}
