import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';
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

type Section = 'list' | 'held' | 'reboot-required' | 'needrestart';

/**
 * The scan's reads as one command: one process tree on the node instead of five, which is where a scan's time
 * goes (docs/benchmarks.md, "System Updates: scan: findings"). Each read's output follows a line
 * `<marker> <section>`; the marker is random per scan, so no package name or file content can forge one.
 * A failed read ends the command with its own exit status. needrestart comes last and unguarded: the command's
 * status is its status, so a node without it (127 once its marker was printed) is told apart from a failure.
 * Only `;`, `&&`, `||` and `exit`, which the simulated nodes run too (src/lib/server/sim/host.ts). The scan
 * benchmark gives Ansible this same command.
 */
export function buildScanCommand(marker: string, refresh: boolean, lockTimeoutSeconds: number): ShellCommand {
	const mark = (section: Section) => sh`printf '%s\\n' ${`${marker} ${section}`}`;
	const reads = sh`${mark('list')}
LANG=C apt list --upgradable || exit
${mark('held')}
apt-mark showhold || exit
test -e ${REBOOT_REQUIRED} && ${mark('reboot-required')} && cat ${REBOOT_REQUIRED_PACKAGES} 2>/dev/null
${mark('needrestart')}
needrestart -b -r l`;
	if (!refresh) return reads;
	return sh`LANG=C apt-get -q -o ${`DPkg::Lock::Timeout=${lockTimeoutSeconds}`} update || exit
${reads}`;
}

/** What followed each marker line in the scan command's output; what came before the first is apt-get's. */
function splitSections(stdout: string, marker: string): Map<Section, string> {
	const sections = new Map<Section, string>();
	let current: Section | null = null;
	for (const line of stdout.split('\n')) {
		if (line.startsWith(`${marker} `)) {
			current = line.slice(marker.length + 1) as Section;
			sections.set(current, '');
		} else if (current) sections.set(current, `${sections.get(current)}${line}\n`);
	}
	return sections;
}

/** Reads everything a scan records from a connected node; used by the scan flow and after an apply. */
export async function readNode(
	ctx: Pick<StepContext<unknown>, 'exec'>,
	refresh: boolean,
	lockTimeoutSeconds = APT_LOCK_TIMEOUT_SECONDS,
	deadlineSeconds = lockTimeoutSeconds + 180
): Promise<ScanResult> {
	const marker = `flotilla-scan-${randomBytes(6).toString('hex')}`;
	const result = await ctx.exec(buildScanCommand(marker, refresh, lockTimeoutSeconds), {
		deadlineMs: deadlineSeconds * 1000,
		okExitCodes: [0, COMMAND_NOT_FOUND]
	});
	const sections = splitSections(result.stdout, marker);
	// 127 before needrestart's turn is a read that could not run (apt itself missing): a failure like any other.
	if (result.exitCode === COMMAND_NOT_FOUND && !sections.has('needrestart')) {
		throw new StepFailed(`exited with 127: ${result.stderr.trim().split('\n').at(-1) ?? ''}`, COMMAND_NOT_FOUND);
	}
	const rebootRequired = sections.has('reboot-required');
	return {
		packages: parseUpgradable(sections.get('list') ?? ''),
		rebootRequired,
		rebootPackages: rebootRequired ? parseRebootPackages(sections.get('reboot-required')!) : [],
		servicesToRestart:
			result.exitCode === COMMAND_NOT_FOUND ? null : parseNeedrestart(sections.get('needrestart') ?? '').services,
		held: (sections.get('held') ?? '')
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
