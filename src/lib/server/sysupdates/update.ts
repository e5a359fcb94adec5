import { z } from 'zod';
import { packageNameSchema } from '$lib/schemas/remote';
import { verifyRolesHealthy } from '$lib/server/codesync/role-health';
import { StepFailed, type Flow, type StepContext } from '$lib/server/engine';
import { sshTargetFor } from '$lib/server/fleet/targets';
import { connect, type SshConnection } from '$lib/server/ssh/connection';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';
import { parseSimulation } from './apt';
import { holdPatternsFor } from './holds';
import { applySoak, decide, rebootsNow, type Decision } from './policy';
import { policyOf } from './role-policies';
import { rebootBlockedBy, recordRebootEnd, recordRebootStart } from './reboots';
import { firstSeenOf, recordRebooted, recordScan, recordUpdateOutcome } from './records';
import { readNode } from './scan';

/**
 * A system update on one node (docs/system-updates.md, "Apply"): read what is pending, decide per policy,
 * simulate with `apt-get -s` and refuse when apt would do something other than the plan, install
 * non-interactively (waiting for another apt's lock), rescan, verify the node's roles are healthy, and reboot
 * when a package asks for it and the policy allows it now.
 */

const planned = z.object({ name: packageNameSchema, candidate: z.string().min(1).max(256) }).strict();

export const updateParams = z
	.object({
		forceFull: z.boolean().default(false),
		packages: z.array(packageNameSchema).optional(),
		reboot: z.enum(['now', 'window', 'never']).optional(),
		/**
		 * Per node id, the plan the operator approved (what the last scan offered when they reviewed it): that
		 * node's update refuses to apply anything else. Nodes without an entry are not pinned.
		 */
		approved: z.record(z.string(), z.array(planned)).optional(),
		/** Started by the console itself (schedule, window): any drift from the plan refuses the apply. */
		automatic: z.boolean().default(false),
		lockTimeoutSeconds: z.number().int().min(0).max(3600).default(300),
		rebootTimeoutSeconds: z.number().int().min(5).max(3600).default(600),
		/** The install's own deadline, on top of the wait for the lock. */
		applyTimeoutSeconds: z.number().int().min(1).max(86_400).default(1800),
		/** Automatic updates take only versions the fleet has known this many days (docs/system-updates.md). */
		soakDays: z.number().int().min(0).max(365).default(0),
		soakSecurityExempt: z.boolean().default(true),
		/** Install nothing, only do the reboot the node waits for (a security-policy node in its window). */
		rebootOnly: z.boolean().default(false),
		/** Whether the node is inside its maintenance window, decided when the run was planned. */
		insideWindow: z.boolean().default(false)
	})
	.strict();
export type UpdateParams = z.infer<typeof updateParams>;

interface UpdateMemo {
	decision?: Decision;
	/** Per package to install, the candidate version the plan expects. */
	plan?: { name: string; candidate: string }[];
	rebootRequired?: boolean;
	rebooted?: boolean;
}

type Ctx = StepContext<UpdateParams>;
const memoOf = (ctx: Ctx) => ctx.memo as UpdateMemo;

function aptCommand(ctx: Ctx, simulate: boolean, packages: string[]): ShellCommand {
	const lock = `DPkg::Lock::Timeout=${ctx.params.lockTimeoutSeconds}`;
	// confdef/confold: a changed config file keeps the local version, never a prompt that would hang the run.
	return sh`LANG=C DEBIAN_FRONTEND=noninteractive apt-get -y -q ${simulate ? ['-s'] : []} -o ${'Dpkg::Options::=--force-confdef'} -o ${'Dpkg::Options::=--force-confold'} -o ${lock} install --only-upgrade -- ${packages}`;
}

function describeDrift(
	expected: { name: string; candidate: string }[],
	actual: { name: string; candidate: string }[]
): string[] {
	const want = new Map(expected.map((p) => [p.name, p.candidate]));
	const got = new Map(actual.map((p) => [p.name, p.candidate]));
	const out: string[] = [];
	for (const [name, v] of got) {
		if (!want.has(name)) out.push(`${name} ${v} is not in the plan`);
		else if (want.get(name) !== v) out.push(`${name} would be ${v}, the plan says ${want.get(name)}`);
	}
	for (const [name, v] of want) if (!got.has(name)) out.push(`${name} ${v} would not be installed`);
	return out;
}

/** Waits until the node's old session is gone, then until a new one opens; the new connection, verified. */
async function waitForReturn(ctx: Ctx, timeoutMs: number): Promise<SshConnection> {
	const until = performance.now() + timeoutMs;
	const pause = () => new Promise((r) => setTimeout(r, 500));
	while (!ctx.ssh.closed) {
		if (performance.now() > until || ctx.signal.aborted)
			throw new StepFailed(`${ctx.node.name} did not go down after the reboot command`);
		await pause();
	}
	ctx.log('the node went down');
	const target = await sshTargetFor(ctx.node);
	for (;;) {
		if (ctx.signal.aborted) throw new StepFailed('stopped while waiting for the node to come back');
		try {
			return await connect(target, { readyTimeoutMs: 5_000 });
		} catch {
			if (performance.now() > until) {
				throw new StepFailed(
					`${ctx.node.name} did not come back within ${Math.round(timeoutMs / 1000)} s of its reboot`
				);
			}
			await pause();
		}
	}
}

export const updateFlow: Flow<UpdateParams> = {
	kind: 'system-update',
	title: 'System update',
	parseParams: (p) => updateParams.parse(p),
	// Packages are never downgraded: no step has an undo, so a failed update ends failed, never rolled back.
	steps: [
		{
			name: 'plan',
			deadlineMs: 900_000,
			retry: { attempts: 2, delayMs: 2_000 },
			async do(ctx) {
				const found = await readNode(ctx, true, ctx.params.lockTimeoutSeconds);
				await recordScan(ctx.node.id, ctx.task.runId, found);
				let decision = decide({
					policy: (await policyOf(ctx.node)).policy,
					forceFull: ctx.params.forceFull,
					packages: ctx.params.packages,
					pending: found.packages,
					aptHeld: found.held,
					holdPatterns: await holdPatternsFor(ctx.node),
					reboot: ctx.params.reboot
				});
				if (ctx.params.rebootOnly) decision.packages = [];
				if (ctx.params.automatic && ctx.params.soakDays > 0) {
					const seen = await firstSeenOf(found.packages);
					decision = applySoak(
						decision,
						found.packages,
						(p) => seen.get(`${p.name} ${p.arch} ${p.candidate}`) ?? null,
						new Date(),
						{ days: ctx.params.soakDays, securityExempt: ctx.params.soakSecurityExempt }
					);
				}
				const byName = new Map(found.packages.map((p) => [p.name, p]));
				const plan = decision.packages.map((name) => ({ name, candidate: byName.get(name)!.candidate }));
				for (const h of decision.held) ctx.log(`held: ${h.name} (${h.by})`);
				const approved = ctx.params.approved?.[ctx.node.id];
				const drift = approved ? describeDrift(approved, plan) : [];
				if (drift.length) throw new StepFailed(`the node changed since the plan was approved: ${drift.join('; ')}`);
				memoOf(ctx).decision = decision;
				memoOf(ctx).plan = plan;
				memoOf(ctx).rebootRequired = found.rebootRequired;
				if (plan.length) ctx.log(`plan: ${plan.map((p) => `${p.name} ${p.candidate}`).join(', ')}`);
				else ctx.log(`nothing to install: ${decision.reason}`);
				if (!plan.length && !rebootsNow(decision.reboot, found.rebootRequired, ctx.params.insideWindow)) {
					ctx.skip(decision.reason ?? 'nothing to do');
				}
			}
		},
		{
			name: 'simulate',
			deadlineMs: 300_000,
			retry: { attempts: 2, delayMs: 2_000 },
			async do(ctx) {
				const plan = memoOf(ctx).plan ?? [];
				if (!plan.length) return;
				const sim = await ctx.exec(
					aptCommand(
						ctx,
						true,
						plan.map((p) => p.name)
					)
				);
				const changes = parseSimulation(sim.stdout);
				const removals = changes.filter((c) => c.action === 'remove').map((c) => `${c.name} would be removed`);
				const drift = [
					...removals,
					...describeDrift(
						plan,
						changes.filter((c) => c.action === 'install').map((c) => ({ name: c.name, candidate: c.to! }))
					)
				];
				if (drift.length) throw new StepFailed(`apt-get -s differs from the plan: ${drift.join('; ')}`);
				ctx.log(`apt-get -s agrees with the plan (${plan.length} package(s))`);
			}
		},
		{
			name: 'apply',
			// apt may wait for another apt's lock first.
			deadlineMs: 3_600_000,
			async do(ctx) {
				const plan = memoOf(ctx).plan ?? [];
				if (!plan.length) return;
				const r = await ctx.exec(
					aptCommand(
						ctx,
						false,
						plan.map((p) => p.name)
					),
					{
						deadlineMs: (ctx.params.lockTimeoutSeconds + ctx.params.applyTimeoutSeconds) * 1000,
						okExitCodes: [0, 100]
					}
				);
				if (r.exitCode === 100) {
					const lock = /Could not get lock (\S+)\. It is held by process (\d+) \(([^)]*)\)/.exec(r.stderr);
					throw new StepFailed(
						lock
							? `apt waited ${ctx.params.lockTimeoutSeconds} s for ${lock[1]}, still held by process ${lock[2]} (${lock[3]}); nothing was installed`
							: `apt-get failed: ${r.stderr.trim().split('\n').at(-1) ?? 'exit 100'}`,
						100
					);
				}
			}
		},
		{
			name: 'rescan',
			deadlineMs: 300_000,
			retry: { attempts: 2, delayMs: 2_000 },
			async do(ctx) {
				const found = await readNode(ctx, false, ctx.params.lockTimeoutSeconds);
				await recordScan(ctx.node.id, ctx.task.runId, found);
				const left = new Set(found.packages.map((p) => p.name));
				const missed = (memoOf(ctx).plan ?? []).filter((p) => left.has(p.name)).map((p) => p.name);
				if (missed.length) throw new StepFailed(`still pending after the update: ${missed.join(', ')}`);
				memoOf(ctx).rebootRequired = found.rebootRequired;
				ctx.log(found.rebootRequired ? `reboot required by ${found.rebootPackages.join(', ')}` : 'no reboot required');
			}
		},
		{
			name: 'health',
			deadlineMs: 660_000,
			async do(ctx) {
				const exec = (command: ShellCommand, options?: { deadlineMs?: number }) =>
					ctx.exec(command, { ...options, okExitCodes: ALL_EXIT_CODES });
				const checked = await verifyRolesHealthy(exec, ctx.node.roles, ctx.signal, ctx.log);
				if (!checked.length) ctx.log('no role on this node defines a health check');
			}
		},
		{
			name: 'reboot',
			deadlineMs: 3_900_000,
			async do(ctx) {
				const memo = memoOf(ctx);
				const choice = memo.decision?.reboot ?? 'never';
				if (!memo.rebootRequired) return;
				if (!rebootsNow(choice, true, ctx.params.insideWindow)) {
					ctx.log(
						choice === 'window'
							? 'reboot required: left for the maintenance window'
							: 'reboot required: not rebooting (policy)'
					);
					return;
				}
				const blocked = await rebootBlockedBy(ctx.task.runId, ctx.node);
				if (blocked) throw new StepFailed(`not rebooted: ${blocked}`);
				await recordRebootStart(ctx.task.runId, ctx.node);
				let conn: SshConnection | undefined;
				try {
					await ctx.exec(sh`systemctl reboot`);
					ctx.log('rebooting');
					memo.rebooted = true;
					conn = await waitForReturn(ctx, ctx.params.rebootTimeoutSeconds * 1000);
					ctx.log('the node is back');
					const back = conn;
					const exec = (command: ShellCommand, options?: { deadlineMs?: number }) =>
						back.exec(command, { deadlineMs: options?.deadlineMs ?? 15_000, signal: ctx.signal });
					await verifyRolesHealthy(exec, ctx.node.roles, ctx.signal, ctx.log);
					await recordRebooted(ctx.node.id);
					await recordRebootEnd(ctx.task.runId, ctx.node.id, null);
				} catch (err) {
					await recordRebootEnd(ctx.task.runId, ctx.node.id, err instanceof Error ? err.message : String(err));
					throw err;
				} finally {
					conn?.close();
				}
			}
		}
	],

	/** Every step reads the node afresh, and apt installs what is still pending only: safe to run again. */
	async inspect() {
		return 'restart';
	},

	/** A failed update shows on the node (FAILED, with why) until one succeeds; packages are never downgraded. */
	async finished(end) {
		if (end.state === 'succeeded') await recordUpdateOutcome(end.node.id, end.task.runId, null);
		if (end.state === 'failed') {
			await recordUpdateOutcome(end.node.id, end.task.runId, end.error ?? 'the system update failed');
		}
	}
};

const ALL_EXIT_CODES = Array.from({ length: 256 }, (_, i) => i);
