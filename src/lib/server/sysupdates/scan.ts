import { z } from 'zod';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import { parseNeedrestart, parseRebootPackages, parseUpgradable } from './apt';
import { recordScan, recordScanFailure, type ScanResult } from './records';

/**
 * The scan (docs/system-updates.md, "Scan"): refreshes apt's lists, reads what is upgradable, whether a reboot
 * is required and by which packages, which services run deleted libraries (where needrestart is installed),
 * and the packages on hold. Read-only on the node apart from apt's lists.
 */

/** How long apt waits for another apt (unattended-upgrades) to finish before it gives up, in seconds. */
export const APT_LOCK_TIMEOUT_SECONDS = 120;

export const scanParams = z
	.object({
		/** Run `apt-get update` first (the default); off, the scan reads the lists as the node last fetched them. */
		refresh: z.boolean().default(true),
		/** Each command's deadline (apt waiting for another apt's lock included). */
		commandTimeoutSeconds: z
			.number()
			.int()
			.min(1)
			.max(3600)
			.default(APT_LOCK_TIMEOUT_SECONDS + 180)
	})
	.strict();
export type ScanParams = z.infer<typeof scanParams>;

/** Debian's marker that a reboot is needed, and the packages that asked for it. */
const REBOOT_REQUIRED = '/var/run/reboot-required';
const REBOOT_REQUIRED_PACKAGES = '/var/run/reboot-required.pkgs';

const COMMAND_NOT_FOUND = 127;

/** Reads everything a scan records from a connected node; used by the scan flow and after an apply. */
export async function readNode(
	ctx: Pick<StepContext<unknown>, 'exec'>,
	refresh: boolean,
	lockTimeoutSeconds = APT_LOCK_TIMEOUT_SECONDS,
	deadlineSeconds = lockTimeoutSeconds + 180
): Promise<ScanResult> {
	const deadlineMs = deadlineSeconds * 1000;
	if (refresh) {
		await ctx.exec(sh`LANG=C apt-get -q -o ${`DPkg::Lock::Timeout=${lockTimeoutSeconds}`} update`, { deadlineMs });
	}
	const list = await ctx.exec(sh`LANG=C apt list --upgradable`, { deadlineMs });
	const packages = parseUpgradable(list.stdout);
	const required = await ctx.exec(sh`test -e ${REBOOT_REQUIRED}`, { okExitCodes: [0, 1] });
	const rebootRequired = required.exitCode === 0;
	const pkgs = rebootRequired ? await ctx.exec(sh`cat ${REBOOT_REQUIRED_PACKAGES}`, { okExitCodes: [0, 1] }) : null;
	const needrestart = await ctx.exec(sh`needrestart -b -r l`, {
		deadlineMs,
		okExitCodes: [0, 1, COMMAND_NOT_FOUND]
	});
	if (needrestart.exitCode === 1) throw new StepFailed(`needrestart -b failed: ${needrestart.stderr.trim()}`, 1);
	const held = await ctx.exec(sh`apt-mark showhold`, { deadlineMs });
	return {
		packages,
		rebootRequired,
		rebootPackages: pkgs?.exitCode === 0 ? parseRebootPackages(pkgs.stdout) : [],
		servicesToRestart:
			needrestart.exitCode === COMMAND_NOT_FOUND ? null : parseNeedrestart(needrestart.stdout).services,
		held: held.stdout
			.split('\n')
			.map((l) => l.trim())
			.filter((l) => /^[a-z0-9][a-z0-9+.-]*$/.test(l))
			.sort()
	};
}

export const scanFlow: Flow<ScanParams> = {
	kind: 'system-scan',
	title: 'System update scan',
	readOnly: true,
	parseParams: (p) => scanParams.parse(p),
	steps: [
		{
			name: 'scan',
			// apt may wait for another apt's lock, then fetch the lists: minutes, not seconds.
			deadlineMs: (APT_LOCK_TIMEOUT_SECONDS + 420) * 1000,
			// Reading again reads the same: safe to retry.
			retry: { attempts: 2, delayMs: 2_000 },
			async do(ctx) {
				const found = await readNode(
					ctx,
					ctx.params.refresh,
					Math.min(APT_LOCK_TIMEOUT_SECONDS, ctx.params.commandTimeoutSeconds),
					ctx.params.commandTimeoutSeconds
				);
				const security = found.packages.filter((p) => p.security).length;
				ctx.log(
					`${found.packages.length} upgradable (${security} security)` +
						(found.rebootRequired
							? `; reboot required by ${found.rebootPackages.join(', ') || 'an unnamed package'}`
							: '') +
						(found.servicesToRestart?.length ? `; services to restart: ${found.servicesToRestart.join(', ')}` : '')
				);
				await recordScan(ctx.node.id, ctx.task.runId, found);
			}
		}
	],

	async finished(end) {
		if (end.state === 'failed') await recordScanFailure(end.node.id, end.task.runId, end.error ?? 'the scan failed');
	}
};
