import { z } from 'zod';
import type { InstallApplianceInput } from '$lib/schemas/appliances';
import type { Actor } from '$lib/server/audit';
import { createRun, StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { installFile } from '$lib/server/provisioning/phases';
import { quote, sh, type ShellCommand } from '$lib/server/ssh/shell';
import slotHelper from '../../../../appliance/flotilla-slot?raw';
import networkCheck from '../../../../appliance/health.d/10-network?raw';
import serviceCheck from '../../../../appliance/health.d/20-service?raw';
import consoleCheck from '../../../../appliance/health.d/30-console?raw';
import timeCheck from '../../../../appliance/health.d/40-time?raw';
import { readSlots } from './slots';

/**
 * Installing the appliance's side over SSH (docs/appliances.md, "Installing over SSH"): the slot helper, the
 * units that run its boot logic, its boot health gate and its watchdog, and the watchdog's settings pointed at
 * this console, and the default health checks where the appliance has none of its own (never over its own).
 * The release keys and the minimum version are the appliance's own (installed with it, never by the console: a
 * console could otherwise make it trust an image nobody signed), so this flow only says whether they are there.
 * Every file is written only when it differs, so running it again changes nothing that is right.
 */

export const applianceFiles = {
	/** Where every appliance keeps it: the testbed's and the simulated ones too (sim/paths.ts, `slotHelper`). */
	helper: '/opt/flotilla/bin/flotilla-slot',
	watchdogConf: '/etc/flotilla/watchdog.conf',
	healthChecks: '/etc/flotilla/health.d',
	healthConf: '/etc/flotilla/health.conf',
	units: '/etc/systemd/system'
} as const;

/** The units, enabled in this order; only the watchdog's timer runs now, the others at the next boot. */
export const applianceUnits = [
	'flotilla-slot-boot.service',
	'flotilla-slot-gate.service',
	'flotilla-slot-watchdog.timer'
];

/** The default health checks (appliance/health.d), by file name. */
export const defaultHealthChecks: Record<string, string> = {
	'10-network': networkCheck,
	'20-service': serviceCheck,
	'30-console': consoleCheck,
	'40-time': timeCheck
};

/** The line that tells a default check (which the console keeps up to date) from one of the appliance's own. */
const defaultCheckMark = '# flotilla-default-check:';

const installParams = z.object({
	console_url: z.string(),
	unreachable_seconds: z.number().int(),
	armed_seconds: z.number().int()
});
type InstallParams = z.infer<typeof installParams>;

const unitFiles: Record<string, string> = {
	// Early in the boot of either slot, once /boot is mounted: counts the boots of an uncommitted slot, falls
	// back to the good one after 3, and reboots when the bootloader started another slot than it chose.
	'flotilla-slot-boot.service': `[Unit]
Description=Flotilla A/B boot: count the boots of an uncommitted slot, fall back after 3 (docs/appliances.md)
DefaultDependencies=no
RequiresMountsFor=/boot/flotilla
After=local-fs.target
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${applianceFiles.helper} boot

[Install]
WantedBy=sysinit.target
`,
	// The boot health gate: commits a healthy new slot, reboots an unhealthy one (the boot unit falls back after
	// 3). It waits a minute so that the appliance's services are up, and the console, when it is there, gates
	// first.
	'flotilla-slot-gate.service': `[Unit]
Description=Flotilla boot health gate: commit a healthy new slot, else reboot (docs/appliances.md)
Wants=network-online.target time-sync.target
After=network-online.target time-sync.target flotilla-slot-boot.service

[Service]
Type=oneshot
ExecStartPre=/bin/sleep 60
ExecStart=${applianceFiles.helper} boot-gate

[Install]
WantedBy=multi-user.target
`,
	'flotilla-slot-watchdog.service': `[Unit]
Description=Flotilla watchdog: back to the previous slot when the console stays unreachable after an update (docs/appliances.md)
After=network-online.target

[Service]
Type=oneshot
ExecStart=${applianceFiles.helper} watchdog
`,
	'flotilla-slot-watchdog.timer': `[Unit]
Description=Run the Flotilla watchdog every minute (docs/appliances.md)

[Timer]
OnBootSec=2min
OnUnitActiveSec=1min

[Install]
WantedBy=timers.target
`
};

const watchdogConf = (p: InstallParams) =>
	[
		'# Written by the Flotilla console that installed this appliance (docs/appliances.md, "Installing over SSH").',
		`console_url=${quote(`${p.console_url}/healthz`)}`,
		`unreachable_seconds=${p.unreachable_seconds}`,
		`armed_seconds=${p.armed_seconds}`,
		''
	].join('\n');

const root = { owner: 'root', group: 'root' };

/**
 * The default health checks go only where every check in health.d is a default one (none at all on a new
 * appliance): a check of the appliance's own means its health gate is its own, and nothing there is touched.
 */
async function installHealthChecks(ctx: StepContext<InstallParams>): Promise<void> {
	const dir = applianceFiles.healthChecks;
	// The checks as the gate sees them (executable files), each said to be a default one or the appliance's own.
	// Asked quietly: the run's log says what was decided, in its own words.
	const quietly = (command: ShellCommand) => ctx.ssh.exec(command, { deadlineMs: 30_000, signal: ctx.signal });
	const found = await quietly(
		sh`mkdir -p -- ${dir} && cd -- ${dir} && for f in *; do if [ -f "$f" ] && [ -x "$f" ]; then if grep -q -- ${`^${defaultCheckMark}`} "$f"; then echo "default $f"; else echo "own $f"; fi; fi; done`
	);
	if (found.exitCode !== 0) throw new StepFailed(`could not read ${dir}: ${found.stderr.trim()}`);
	const own = [...found.stdout.matchAll(/^own (.+)$/gm)].map((m) => m[1]!);
	if (own.length > 0) {
		ctx.log(`${dir}: the appliance's own health checks (${own.join(', ')}): the default checks are not installed`);
		return;
	}
	for (const [name, content] of Object.entries(defaultHealthChecks)) {
		const path = `${dir}/${name}`;
		const wrote = await installFile(ctx as StepContext<unknown>, content, path, { mode: '755', ...root });
		ctx.log(`${path}: ${wrote ? 'installed' : 'unchanged'} (default health check)`);
	}
	// The service check needs to be told which units are the appliance's service; without them it fails the gate.
	const conf = await quietly(sh`(services=; . ${applianceFiles.healthConf} >/dev/null 2>&1; printf '%s' "$services")`);
	const services = conf.stdout.trim();
	ctx.log(
		services
			? `the default service check looks at: ${services} (services= in ${applianceFiles.healthConf})`
			: `no services= in ${applianceFiles.healthConf}: the default service check fails (and the health gate with it) until it names the appliance's unit(s)`
	);
}

export const applianceInstallFlow: Flow<InstallParams> = {
	kind: 'appliance-install',
	title: 'Install the appliance side',
	parseParams: (p) => installParams.parse(p),
	steps: [
		{
			name: 'files',
			deadlineMs: 60_000,
			async do(ctx) {
				const made = await ctx.exec(sh`mkdir -p -- /opt/flotilla/bin /etc/flotilla ${applianceFiles.units}`);
				if (made.exitCode !== 0) throw new StepFailed(`could not create the folders: ${made.stderr.trim()}`);
				const files: [string, string, string][] = [
					[applianceFiles.helper, slotHelper, '755'],
					[applianceFiles.watchdogConf, watchdogConf(ctx.params), '644'],
					...Object.entries(unitFiles).map(([name, text]): [string, string, string] => [
						`${applianceFiles.units}/${name}`,
						text,
						'644'
					])
				];
				for (const [path, content, mode] of files) {
					const wrote = await installFile(ctx as StepContext<unknown>, content, path, { mode, ...root });
					ctx.log(`${path}: ${wrote ? 'installed' : 'unchanged'}`);
				}
				await installHealthChecks(ctx);
			}
		},
		{
			name: 'units',
			deadlineMs: 60_000,
			async do(ctx) {
				const r = await ctx.exec(
					sh`systemctl daemon-reload && systemctl enable -- ${applianceUnits} && systemctl start -- flotilla-slot-watchdog.timer`
				);
				if (r.exitCode !== 0) {
					throw new StepFailed(`could not enable the units: ${r.stderr.trim().split('\n').at(-1) ?? ''}`);
				}
				ctx.log(`enabled ${applianceUnits.join(', ')}; the watchdog's timer is running`);
			}
		},
		{
			name: 'check',
			deadlineMs: 60_000,
			async do(ctx) {
				// The slots as the installed helper sees them (and the page shows them): an appliance never
				// initialised has none to report.
				const found = await readSlots(ctx).catch((err: unknown) => {
					if (err instanceof StepFailed && /^no state in /.test(err.message)) {
						throw new StepFailed(
							'the slot helper has no state on this appliance: run `flotilla-slot init a` (or b: the slot booted now) on it first'
						);
					}
					throw err;
				});
				ctx.log(`slot ${found.active} is booted, slot ${found.good} is committed`);
				// What the appliance must bring itself; without it an update fails at verify, or gates nothing.
				// Labelled, since the output is the task's log too.
				const own = await ctx.exec(
					sh`echo "release_keys=$(ls -1 -- /etc/flotilla/release-keys/*.pem 2>/dev/null | wc -l)"; echo "health_checks=$(ls -1 -- /etc/flotilla/health.d 2>/dev/null | wc -l)"; echo "min_version=$(cat -- /etc/flotilla/min-version 2>/dev/null)"`
				);
				const fact = (name: string) => own.stdout.match(new RegExp(`^${name}=(.*)$`, 'm'))?.[1]?.trim() ?? '';
				const [keys, checks, floor] = [fact('release_keys'), fact('health_checks'), fact('min_version')];
				ctx.log(
					Number(keys) > 0
						? `${keys} release key(s) in /etc/flotilla/release-keys`
						: 'no release key in /etc/flotilla/release-keys: the appliance refuses every image until one is installed with it'
				);
				// Never none: the files step placed the defaults where the appliance had no checks of its own.
				ctx.log(`${checks} health check(s) in ${applianceFiles.healthChecks}`);
				ctx.log(floor ? `minimum version ${floor}` : 'no minimum version (/etc/flotilla/min-version)');
			}
		}
	]
};

/**
 * Starts the install run on one appliance, reached over SSH (its host key pinned), with the watchdog pointed at
 * `consoleUrl`. The run's creation is audited.
 */
export async function startApplianceInstall(
	actor: Actor,
	nodeId: string,
	input: InstallApplianceInput,
	consoleUrl: string
): Promise<{ runId: string }> {
	const node = await getNode(nodeId);
	if (node.kind !== 'appliance') {
		throw new ServiceError('validation_failed', `${node.name} is not an appliance`, { node: 'is not an appliance' });
	}
	if (node.hostKeyStatus !== 'pinned') {
		throw new ServiceError('validation_failed', `${node.name} has no pinned host key`, {
			node: 'has no pinned host key: check the node and accept its key first'
		});
	}
	const run = await createRun(actor, {
		kind: applianceInstallFlow.kind,
		title: `Install the appliance side on ${node.name}`,
		nodeIds: [node.id],
		params: { console_url: consoleUrl, ...input },
		scope: { nodes: [node.id] }
	});
	return { runId: run.id };
}
