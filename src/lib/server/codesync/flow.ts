import { eq, inArray } from 'drizzle-orm';
import { z } from 'zod';
import { roleNameSchema } from '$lib/schemas/nodes';
import { commitSchema } from '$lib/schemas/remote';
import { db } from '$lib/server/db';
import { codeRoles, nodes, type CodeRole } from '$lib/server/db/schema';
import { StepFailed, type Flow, type Step, type StepContext, type TaskEnd } from '$lib/server/engine';
import { sh } from '$lib/server/ssh/shell';
import { runCommand } from './commands';
import { anyExit, describeHealth, probeHealth, waitHealthy, workDir } from './health';
import { methodFor } from './methods';
import { checkReadiness, quiesce, restoreSnapshot, resume, takeSnapshot } from './preflight';
import { verifyOnNode } from './signatures';
import { recordFailed, recordSynced } from './versions';

/**
 * Code Sync on one node (docs/code-sync.md, "The update of one node"): for each of the node's roles the run
 * targets, in role order — record the commit it runs, refuse a dirty tree, fetch, switch to the target,
 * install, restart, verify health, record the new commit. When anything fails, every switched role goes
 * back to its recorded commit (switch back, install, restart) and its health is verified.
 */

export const codeSyncParams = z.object({
	/** Per role, the commit to deploy: pinned when the run was planned, so a later notification cannot move it. */
	targets: z.record(roleNameSchema, commitSchema),
	/**
	 * Per node id, targets that replace `targets` on that node: a fleet rollback sends each node back to the
	 * commits it ran before, which differ from node to node.
	 */
	node_targets: z.record(z.string(), z.record(roleNameSchema, commitSchema)).optional()
});
export type CodeSyncParams = z.infer<typeof codeSyncParams>;

/** What a task remembers per role, in the task's memo: enough to undo after a crash. */
export interface RoleProgress {
	role: string;
	target: string;
	/** The commit the node ran before (null: a push role with no release yet). */
	previous: string | null;
	/** The full commit the node runs after the switch. */
	head?: string;
	switched?: boolean;
	/** A `commands` role whose rollback command ran: it does not run twice in one undo. */
	rolledBack?: boolean;
	/** The pre-flight snapshot taken before the switch, which a rollback restores. */
	snapshot?: string;
	/** Told to quiesce (and not resumed yet): a rollback's restart resumes it. */
	quiesced?: boolean;
}

type Ctx = StepContext<CodeSyncParams>;

/**
 * Work another domain adds to the update of each role, after its install and before its restart: provisioning's
 * secrets and unit files (docs/provisioning.md), so that what changed in a role's definition reaches its nodes
 * with their next update. Registered once at start-up; a role the phase has nothing for costs no command.
 */
export interface RoleUpdatePhase {
	name: string;
	apply(ctx: StepContext<unknown>, role: CodeRole): Promise<void>;
}

const roleUpdatePhases: RoleUpdatePhase[] = [];

export function registerRoleUpdatePhase(phase: RoleUpdatePhase): void {
	if (!roleUpdatePhases.some((p) => p.name === phase.name)) roleUpdatePhases.push(phase);
}

function targetsOf(params: CodeSyncParams, nodeId: string): Record<string, string> {
	return params.node_targets?.[nodeId] ?? params.targets;
}

function progress(ctx: Ctx): RoleProgress[] {
	return (ctx.memo.roles as RoleProgress[] | undefined) ?? [];
}

/** The role definitions this task works on, in order, loaded once per task attempt. */
const rolesCache = new WeakMap<object, CodeRole[]>();
async function rolesOf(ctx: Ctx): Promise<CodeRole[]> {
	const cached = rolesCache.get(ctx.memo);
	if (cached) return cached;
	const wanted = Object.keys(targetsOf(ctx.params, ctx.node.id)).filter((r) => ctx.node.roles.includes(r));
	const rows = wanted.length ? await db().select().from(codeRoles).where(inArray(codeRoles.name, wanted)) : [];
	rows.sort((a, b) => a.sortOrder - b.sortOrder || a.name.localeCompare(b.name));
	rolesCache.set(ctx.memo, rows);
	return rows;
}

async function pending(ctx: Ctx): Promise<{ role: CodeRole; p: RoleProgress }[]> {
	const roles = await rolesOf(ctx);
	return progress(ctx).flatMap((p) => {
		const role = roles.find((r) => r.name === p.role);
		return role ? [{ role, p }] : [];
	});
}

/** One restart command's budget; the restart step's own is larger, for the quiesce and resume around it. */
const RESTART_DEADLINE_MS = 120_000;

/**
 * Restarts the role and says so in the task's log: a restart prints nothing on success, and inside a rollback
 * (the undo of `switch`) it has no step row of its own to show that it happened.
 */
async function restart(ctx: Ctx, role: CodeRole): Promise<void> {
	if (role.restartCommand.length) {
		await ctx.exec(sh`cd -- ${workDir(role)} && ${role.restartCommand}`, { deadlineMs: RESTART_DEADLINE_MS });
		ctx.log(`${role.name}: restarted (${role.restartCommand.join(' ')})`);
		return;
	}
	for (const unit of role.units) {
		await ctx.exec(sh`systemctl restart -- ${unit}`, { deadlineMs: RESTART_DEADLINE_MS });
		ctx.log(`${role.name}: restarted (systemctl restart ${unit})`);
	}
}

async function install(ctx: Ctx, role: CodeRole): Promise<void> {
	if (role.installCommand.length) await ctx.exec(sh`cd -- ${workDir(role)} && ${role.installCommand}`);
}

/**
 * The whole restore per switched role, last first: back to the recorded commit, reinstall, put the pre-flight
 * snapshot back (before the restart, so the old code starts on the old data), restart, and resume a role
 * that was told to quiesce.
 */
async function restoreSwitched(ctx: Ctx): Promise<void> {
	for (const { role, p } of (await pending(ctx)).reverse()) {
		if (!p.switched) continue;
		await methodFor(role).switchBack(ctx, role, p.previous);
		ctx.log(`${role.name}: back on ${p.previous ? p.previous.slice(0, 12) : 'no release'}`);
		if (p.previous) await install(ctx, role);
		if (p.snapshot) await restoreSnapshot(ctx, role, p.snapshot);
		await restart(ctx, role);
		if (p.quiesced) {
			await resume(ctx, role);
			p.quiesced = false;
		}
		p.switched = false;
		p.rolledBack = true;
	}
}

/**
 * The undo of a `commands` role's steps before its switch: the role's rollback command, once, for every
 * commands role that has not been switched back already (a switched one went back through its switch's undo).
 */
async function rollbackCommands(ctx: Ctx): Promise<void> {
	for (const { role, p } of (await pending(ctx)).reverse()) {
		if (role.method !== 'commands' || p.rolledBack) continue;
		if (!(await runCommand(ctx, role, 'rollback', { target: p.target, previous: p.previous }))) {
			throw new StepFailed(`${role.name}: no rollback command, so what its update did so far stays on the node`);
		}
		p.rolledBack = true;
	}
}

/** backup, migrate or smoke: run for each `commands` role of the node; nothing to do for the other methods. */
function commandStep(name: 'backup' | 'migrate' | 'smoke'): Step<CodeSyncParams> {
	return {
		name,
		// Each command has its own deadline (at most an hour); this is only the step's outer bound.
		deadlineMs: 2 * 3_600_000,
		async do(ctx) {
			for (const { role, p } of await pending(ctx)) {
				if (role.method === 'commands') await runCommand(ctx, role, name, { target: p.target, previous: p.previous });
			}
		},
		undo: rollbackCommands
	};
}

/**
 * What the roles' health checks say now, one problem per unhealthy role (empty: all healthy). For flows built
 * on this one that keep watching after the update (a rollout's bake).
 */
export async function roleHealthProblems(ctx: Ctx): Promise<string[]> {
	const problems: string[] = [];
	for (const { role } of await pending(ctx)) {
		const problem = await probeHealth(anyExit(ctx), role);
		if (problem) problems.push(`${role.name}: ${problem}`);
	}
	return problems;
}

/**
 * The per-node deploy of Code Sync as a flow of another kind: a rollout stage deploys a release's commit the
 * same way, with steps of its own before everything (`first`, e.g. waiting for a maintenance window) and between
 * the health verification and the record (`beforeRecord`, e.g. a bake), and its own records when a task ends
 * (`finished`, after Code Sync's).
 */
export function deployFlow<P extends CodeSyncParams>(
	kind: string,
	parseParams: (params: unknown) => P,
	extra: { first?: Step<P>[]; beforeRecord?: Step<P>[]; finished?: (end: TaskEnd<P>) => Promise<void> } = {}
): Flow<P> {
	// Signatures are checked and the snapshot taken (preflight) before the release's own programs run.
	const [, fetch, preflight, ...rest] = codeSyncSteps;
	const steps = [
		...((extra.first ?? []) as unknown as Step<CodeSyncParams>[]),
		prepareStep(true),
		commandStep('backup'),
		fetch!,
		preflight!,
		commandStep('migrate'),
		commandStep('smoke'),
		...rest
	] as unknown as Step<P>[];
	return {
		...(codeSyncBase as unknown as Omit<Flow<P>, 'kind' | 'steps'>),
		kind,
		parseParams,
		steps: [...steps.slice(0, -1), ...(extra.beforeRecord ?? []), steps.at(-1)!],
		async finished(end) {
			await codeSyncBase.finished!(end);
			await extra.finished?.(end);
		}
	};
}

/**
 * What the node runs per role, and refusing a dirty tree. A `commands` role is updated only by the release
 * flows (`deployFlow`), which have its backup, migrate and smoke steps: Code Sync's own update leaves it out.
 */
function prepareStep(withCommands: boolean): Step<CodeSyncParams> {
	return {
		name: 'prepare',
		// The survey takes seconds; a readiness check may take up to its own deadline (at most 300 s).
		deadlineMs: 400_000,
		async do(ctx) {
			const all = await rolesOf(ctx);
			const roles = withCommands ? all : all.filter((r) => r.method !== 'commands');
			for (const r of all.filter((x) => !roles.includes(x))) {
				ctx.log(`${r.name}: deploys by commands, through a rollout of a release; not part of this update`);
			}
			if (!roles.length) {
				ctx.skip(
					all.length
						? 'its roles deploy by commands: a rollout of a release updates them'
						: 'none of the roles this update targets is on this node'
				);
			}
			// After a crash the memo already holds what the node ran first: keep that, never the half-way state.
			const known = new Map(progress(ctx).map((p) => [p.role, p]));
			const list: RoleProgress[] = [];
			for (const role of roles) {
				const found = await methodFor(role).survey(ctx, role);
				if (found.dirty) ctx.skip(`${role.name}: ${found.dirty}; not touching it`);
				const notReady = await checkReadiness(ctx, role);
				if (notReady) ctx.skip(`${role.name}: ${notReady}; not touching it`);
				const target = targetsOf(ctx.params, ctx.node.id)[role.name]!;
				const current = known.get(role.name)?.previous ?? found.current;
				ctx.log(`${role.name}: runs ${current ? current.slice(0, 12) : 'nothing yet'}, target ${target.slice(0, 12)}`);
				list.push({ role: role.name, target, previous: current });
			}
			ctx.memo.roles = list;
		}
	};
}

const codeSyncSteps: Step<CodeSyncParams>[] = [
	prepareStep(false),
	{
		name: 'fetch',
		deadlineMs: 300_000,
		// Fetching and unpacking a release again changes nothing: safe to retry.
		retry: { attempts: 2, delayMs: 2_000 },
		async do(ctx) {
			for (const { role, p } of await pending(ctx)) {
				p.target = await methodFor(role).fetch(ctx, role, p.target);
			}
		}
	},
	{
		/**
		 * Before anything on the node changes: the signature of each target is verified where the code is (a
		 * push role's was, in the console, before its upload), then each role's snapshot is taken.
		 */
		name: 'preflight',
		// Each snapshot has its own deadline (at most an hour); this is only the step's outer bound.
		deadlineMs: 2 * 3_600_000,
		async do(ctx) {
			for (const { role, p } of await pending(ctx)) {
				if (role.method === 'git') await verifyOnNode(ctx, role, p.target);
			}
			for (const { role, p } of await pending(ctx)) {
				const taken = await takeSnapshot(ctx, role);
				if (taken) p.snapshot = taken;
			}
		}
	},
	{
		name: 'switch',
		deadlineMs: 60_000,
		async do(ctx) {
			try {
				for (const { role, p } of await pending(ctx)) {
					// Marked before the switch: if it half-happens, the undo still puts the old commit back.
					p.switched = true;
					p.head = await methodFor(role).switchTo(ctx, role, p.target);
					ctx.log(`${role.name}: switched to ${p.head.slice(0, 12)}`);
				}
			} catch (err) {
				// The engine undoes completed steps only: the roles this step already switched go back here.
				await restoreSwitched(ctx);
				throw err;
			}
		},
		undo: restoreSwitched
	},
	{
		name: 'install',
		deadlineMs: 600_000,
		async do(ctx) {
			for (const { role } of await pending(ctx)) {
				await install(ctx, role);
				for (const phase of roleUpdatePhases) await phase.apply(ctx as StepContext<unknown>, role);
			}
		}
	},
	{
		name: 'restart',
		// Each command has its own deadline (quiesce and resume at most 600 s each); the step's outer bound.
		deadlineMs: 3_600_000,
		async do(ctx) {
			for (const { role, p } of await pending(ctx)) {
				if (role.quiesce) {
					// Marked first: a quiesce that times out may have stopped the work half-way, so the rollback resumes.
					p.quiesced = true;
					await quiesce(ctx, role);
				}
				await restart(ctx, role);
				if (p.quiesced) {
					await resume(ctx, role);
					p.quiesced = false;
				}
			}
		}
	},
	{
		name: 'verify',
		deadlineMs: 660_000,
		async do(ctx) {
			for (const { role } of await pending(ctx)) await waitHealthy(anyExit(ctx), role, ctx.signal, ctx.log);
		}
	},
	{
		name: 'record',
		deadlineMs: 30_000,
		async do(ctx) {
			for (const { role, p } of await pending(ctx)) {
				await recordSynced(ctx.node.id, role.name, p.head ?? p.target, p.previous);
			}
			// The whole update just talked to the node: it is reachable, and was seen now.
			await db()
				.update(nodes)
				.set({ reachable: true, lastSeenAt: new Date(), lastError: null })
				.where(eq(nodes.id, ctx.node.id));
		}
	}
];

const codeSyncBase: Omit<Flow<CodeSyncParams>, 'kind' | 'steps'> = {
	/**
	 * After a crash: every step is safe to run again as long as the recorded "previous" commits are kept
	 * (prepare keeps them), so the task restarts — unless a role is on a commit that is neither the one it
	 * had nor the target, which only someone else can have done: then the task rolls back what it started.
	 */
	async inspect(ctx) {
		for (const { role, p } of await pending(ctx)) {
			const now = await methodFor(role).current(anyExit(ctx), role);
			const known = [p.previous, p.target, p.head].filter(Boolean) as string[];
			if (now && !known.some((c) => now.startsWith(c) || c.startsWith(now))) {
				ctx.log(`${role.name}: found on ${now.slice(0, 12)}, which this update did not put there`);
				return 'rollback';
			}
		}
		return 'restart';
	},

	/**
	 * After a rollback, every role that was switched back must be healthy again. Each role's result goes to the
	 * log, as the forward verify's does: a probe that passes prints nothing of its own.
	 */
	async verify(ctx) {
		const problems: string[] = [];
		for (const { role } of await pending(ctx)) {
			const problem = await probeHealth(anyExit(ctx), role);
			ctx.log(
				problem
					? `${role.name}: unhealthy after the rollback (${problem})`
					: `${role.name}: healthy after the rollback (${describeHealth(role)})`
			);
			if (problem) problems.push(problem);
		}
		if (problems.length) throw new StepFailed(`after the rollback: ${problems.join('; ')}`);
	},

	/** A failed or rolled back update is recorded on the node's roles, so the node shows FAILED with why. */
	async finished(end) {
		if (end.state !== 'failed' && end.state !== 'rolled_back') return;
		const list = (end.memo.roles as RoleProgress[] | undefined) ?? [];
		const targets = list.length
			? list.map((p) => ({ role: p.role, target: p.target }))
			: Object.entries(targetsOf(end.params, end.node.id))
					.filter(([role]) => end.node.roles.includes(role))
					.map(([role, target]) => ({ role, target }));
		const why = `${end.state === 'rolled_back' ? 'Rolled back: ' : ''}${end.error ?? 'the update failed'}`;
		for (const t of targets) await recordFailed(end.node.id, t.role, t.target, why, end.task.runId);
	}
};

export const codeSyncFlow: Flow<CodeSyncParams> = {
	...codeSyncBase,
	kind: 'code-sync',
	parseParams: (p) => codeSyncParams.parse(p),
	steps: codeSyncSteps
};
