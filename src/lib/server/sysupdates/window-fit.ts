/**
 * Whether a maintenance window can hold what a node has to do in it (docs/system-updates.md, "Maintenance
 * windows"): an automatic update that would not finish before the window closes is reported and not started,
 * never run past the window's end. The estimate is deliberately generous: a fixed allowance for apt's refresh,
 * simulation, rescan and health check, a share per package, and the whole wait for a reboot to come back.
 */

export const BASE_SECONDS = 120;
export const SECONDS_PER_PACKAGE = 30;
/** What the update waits for a rebooted node by default (the update's `rebootTimeoutSeconds`). */
export const REBOOT_SECONDS = 600;

/**
 * The work of one automatic update: `packages` to install, and whether it may reboot (a reboot pending, or
 * packages on a `full` node, which reboots at once when one of them asks for it).
 */
export function workSeconds(work: { packages: number; mayReboot: boolean }): number {
	return BASE_SECONDS + work.packages * SECONDS_PER_PACKAGE + (work.mayReboot ? REBOOT_SECONDS : 0);
}

/** What a window's next opening (or what is left of the current one) holds against the work waiting for it. */
export interface WindowShortfall {
	needsMinutes: number;
	windowMinutes: number;
}

/** Null when the work fits between `from` and `closes`; else how much it needs and how much there is. */
export function shortfall(seconds: number, from: Date, closes: Date): WindowShortfall | null {
	const available = (closes.getTime() - from.getTime()) / 1000;
	if (seconds <= available) return null;
	return { needsMinutes: Math.ceil(seconds / 60), windowMinutes: Math.max(0, Math.floor(available / 60)) };
}

/** The automatic work a node's window will hold, from its last scan and policy (what applyInsideWindows does). */
export function automaticWork(
	policy: 'full' | 'security' | 'manual',
	pendingCount: number,
	rebootRequired: boolean
): { packages: number; mayReboot: boolean } {
	if (policy === 'manual') return { packages: 0, mayReboot: false };
	const packages = policy === 'full' ? pendingCount : 0;
	return { packages, mayReboot: rebootRequired || packages > 0 };
}
