import { and, asc, eq, sql } from 'drizzle-orm';
import { db, jsonParam, queryRows } from '$lib/server/db';
import {
	taskSteps,
	tasks,
	type Node,
	type RunState,
	type StepPhase,
	type Task,
	type TaskState
} from '$lib/server/db/schema';
import { log, loggableError } from '$lib/server/log';
import type { SshConnection } from '$lib/server/ssh/connection';
import { keepWarm, openConnection } from '$lib/server/ssh/warm';
import { SshError } from '$lib/server/ssh/errors';
import { claimTask } from './claim';
import { nodeAccess } from './node-access';
import { dispatchRun } from './dispatch';
import { recordEvent } from './events';
import { endStep, endTask, startStep } from './task-records';
import { flowFor, SkipTask, StepFailed, type Flow, type Step, type StepContext, type TaskEnd } from './flows';
import { sshConnectionsChanged, stepFinished, taskFinished, rollbackPerformed } from './metrics';
import { TaskOutput } from './output';
import { instanceId, settings } from './runtime';

const DEFAULT_STEP_DEADLINE_MS = 5 * 60_000;
/**
 * How long an interrupted step has to return. `ctx.exec` kills its command's process group on the node
 * (TERM, then KILL a second later: ssh/connection.ts) and returns once that is done, so a step built on it
 * settles within about a second and a round trip; the rest is room for a slow link.
 */
const INTERRUPT_GRACE_MS = 10_000;

/** Why a running task was interrupted. */
type AbortReason = 'cancelled' | 'lease_lost' | 'deadline' | 'shutdown';

class Interrupted extends Error {
	constructor(readonly reason: AbortReason) {
		super(
			{
				cancelled: 'Cancelled by an operator',
				lease_lost: 'This console lost the task to another instance',
				deadline: 'The step passed its deadline',
				shutdown: 'The console is shutting down'
			}[reason]
		);
	}
}

/**
 * A lost lease and a shutdown stop a task outright, rollback included: after a lost lease another instance
 * owns the task, and a console that shuts down leaves what remains to recovery (docs/development.md).
 */
const stopsEverything = (err: unknown): boolean =>
	err instanceof Interrupted && (err.reason === 'lease_lost' || err.reason === 'shutdown');

/** A step that did not return after being interrupted, even once its connection was closed under it. */
class Unstoppable extends Error {}

interface Execution {
	/** Known once the task is claimed. */
	runId: string | null;
	/**
	 * Two signals, because an abort happens once: an operator's cancel (the rollback that follows still runs)
	 * and a stop (lease lost, shutdown: nothing more runs). A task being rolled back after a cancel must still
	 * be stoppable, and keep its lease renewed.
	 */
	cancel: AbortController;
	stop: AbortController;
	settled: Promise<void>;
	/**
	 * Until when (performance.now()) the task's lease surely holds: measured from before the claim or the last
	 * renewal that succeeded was sent, so it never runs past what the database granted.
	 */
	leaseUntil: number;
}

/**
 * Tasks this instance is executing, so that cancels and lease losses can reach them. A task enters it
 * before its claim is even asked for, in the same turn as the check, so one process never runs it twice.
 */
const active = new Map<string, Execution>();
/** Set by a shutdown: no task starts, and running ones stop at their next step boundary. */
let draining = false;
/** A renewal is in flight: the next tick only stops the tasks whose leases it could not renew in time. */
let renewing = false;

/** Aborts this instance's tasks of a run (a cancel from any instance arrives here through the event bus). */
export function interruptRun(runId: string, reason: AbortReason): void {
	for (const a of active.values()) if (a.runId === runId) a.cancel.abort(new Interrupted(reason));
}

/**
 * Extends the leases of the tasks this instance is executing (and only those: a task whose end could not
 * be written is no longer executed, and its lease must run out so that the sweep recovers it). A task whose
 * lease is gone is stopped at once; one whose run was cancelled is cancelled, so that a cancel reaches
 * running tasks through the database even when its event was never written.
 *
 * A renewal is waited for one tick (a third of the lease) at most. One that hangs (a connection that died
 * without a reset, a row lock never released) would otherwise keep every later renewal from starting, and
 * each task claimed after it would be fenced off by its own unrenewed lease. A late answer is still applied:
 * it only ever extends a lease to what the database granted, or stops a task that really lost it.
 */
export async function renewLeases(): Promise<void> {
	const { leaseMs } = settings();
	const sent = performance.now();
	if (renewing) return;
	// Only tasks already claimed before the update can be judged by it: their claims committed before it began,
	// so a missing row means the lease is really gone. A task claimed while the update waited for a busy
	// database is not in its result and must not be stopped as lost.
	const before = [...active.entries()].filter(([, a]) => a.runId !== null && !a.stop.signal.aborted);
	if (!before.length) return;
	renewing = true;
	let timer: NodeJS.Timeout | undefined;
	const tick = new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(250, leaseMs / 3))));
	try {
		await Promise.race([applyRenewal(before, sent, leaseMs), tick]);
	} finally {
		clearTimeout(timer);
		renewing = false;
	}
}

async function applyRenewal(before: [string, Execution][], sent: number, leaseMs: number): Promise<void> {
	try {
		const ids = jsonParam(before.map(([id]) => ({ id })));
		const renewed = await queryRows<{ id: string; run_state: RunState }>(sql`
			update tasks set lease_expires_at = now() + ${`${leaseMs} milliseconds`}::interval
			from runs, jsonb_to_recordset(${ids}::jsonb) as v(id uuid)
			where tasks.id = v.id and runs.id = tasks.run_id and tasks.lease_owner = ${instanceId} and tasks.state = 'running'
			returning tasks.id, runs.state as run_state`);
		const runStateOf = new Map(renewed.map((r) => [r.id, r.run_state]));
		for (const [taskId, a] of before) {
			const runState = runStateOf.get(taskId);
			if (runState === undefined) a.stop.abort(new Interrupted('lease_lost'));
			else {
				// A later renewal may have answered first: a lease never moves back.
				a.leaseUntil = Math.max(a.leaseUntil, sent + leaseMs);
				if (runState === 'cancelled') a.cancel.abort(new Interrupted('cancelled'));
			}
		}
	} catch (err) {
		log.warn({ err: loggableError(err) }, 'lease renewal failed');
	}
}

/**
 * A lease this instance could not renew (the database is unreachable or stalled) is stopped before it runs
 * out: once it has, another console may take the task over, and the two must never run commands on the node
 * at once. Checked every second (the engine's fence timer), apart from renewal, which may itself hang on such
 * a database: a third of the lease before it expires (10 s of the default 30), after two renewals in a row
 * failed, room for a step's commands to be killed (TERM, then KILL a second later). A step that ignores its
 * signal past that is the one case left: its connection is cut only after the interrupt grace. The task is
 * recovered when the database is back.
 */
export function fenceExpiringLeases(): void {
	const now = performance.now();
	const margin = settings().leaseMs / 3;
	for (const a of active.values()) {
		if (a.runId !== null && now > a.leaseUntil - margin) a.stop.abort(new Interrupted('lease_lost'));
	}
}

/**
 * A draining shutdown: no task starts from now on, running tasks stop at their next step boundary, and after
 * `graceMs` the steps still running are interrupted (their commands killed on the node). Nothing is rolled
 * back: what a task left unfinished stays `running` for recovery, which `releaseLeases` then hastens.
 */
export async function drainTasks(graceMs: number): Promise<void> {
	draining = true;
	const settledAll = () => Promise.allSettled([...active.values()].map((a) => a.settled));
	let timer: NodeJS.Timeout | undefined;
	const graceOver = new Promise<'grace over'>((r) => (timer = setTimeout(() => r('grace over'), graceMs)));
	if ((await Promise.race([settledAll(), graceOver])) === 'grace over') {
		log.info({ tasks: active.size }, 'shutdown: interrupting the steps still running');
		for (const a of active.values()) a.stop.abort(new Interrupted('shutdown'));
		await settledAll();
	}
	clearTimeout(timer);
}

/** Takes tasks again after a shutdown's drain (an engine started anew in the same process). */
export function acceptTasks(): void {
	draining = false;
}

/** Lets another instance recover at once the tasks this one left unfinished, instead of after their lease. */
export async function releaseLeases(): Promise<number> {
	const released = await db()
		.update(tasks)
		.set({ leaseExpiresAt: sql`now()` })
		.where(and(eq(tasks.leaseOwner, instanceId), eq(tasks.state, 'running')))
		.returning({ id: tasks.id });
	return released.length;
}

/** Thrown to pg-boss so that it retries the job later. */
export class RetryLater extends Error {}

/**
 * Executes one task: the pg-boss handler. Whatever happens on the node, the task ends in a true terminal
 * state in the database, or (when this instance loses its lease, or shuts down) is left for recovery.
 */
export function executeTask(taskId: string): Promise<void> {
	// Still executing here: a lease that ran out only means its renewal was late (a busy database), not that
	// this instance died. Recovering it would run the task twice at once on its node; the renewal either
	// extends the lease or, if another instance took the task meanwhile, stops this execution.
	if (active.has(taskId)) return Promise.resolve();
	if (draining) return Promise.reject(new RetryLater('The console is shutting down'));
	const execution: Execution = {
		runId: null,
		cancel: new AbortController(),
		stop: new AbortController(),
		settled: Promise.resolve(),
		leaseUntil: performance.now() + settings().leaseMs
	};
	active.set(taskId, execution);
	execution.settled = execute(taskId, execution).finally(() => active.delete(taskId));
	return execution.settled;
}

async function execute(taskId: string, execution: Execution): Promise<void> {
	const claim = await claimTask(taskId);
	if (claim.kind === 'done') return;
	if (claim.kind === 'retry_later') throw new RetryLater(`Task ${taskId} not claimed: ${claim.why}`);
	const { task, run, recovering, credential } = claim;
	execution.runId = task.runId;
	const output = new TaskOutput({ runId: task.runId, taskId: task.id, nodeId: task.nodeId });
	let conn: SshConnection | undefined;
	let reusable = false;
	// The run's kind labels the task's metrics; unknown until the run is read.
	let kind = 'unknown';
	try {
		if (run) kind = run.kind;
		const flow = run && flowFor(run.kind);
		if (!run || !flow) {
			await finishTask(task, kind, 'failed', { error: `No flow for run kind ${run?.kind}` });
			return;
		}
		if (run.state === 'cancelled' && !recovering) {
			await finishTask(task, kind, 'cancelled', { error: 'The run was cancelled before this task started' });
			return;
		}
		await emitTaskState(task, 'running', { attempt: task.attempt, recovering, instance: instanceId });
		const nodes = nodeAccess();
		const node = claim.node ?? (await nodes.node(task.nodeId));
		const own = (await flow.variant?.(node)) ?? flow;
		try {
			if (own.connects !== false) {
				const target = await nodes.target(node, credential);
				conn = await openConnection(target, { readyTimeoutMs: 15_000 }, { fresh: own.freshSession });
			}
			if (conn) sshConnectionsChanged(+1);
		} catch (err) {
			const message = err instanceof SshError ? err.message : (err as Error).message;
			// After a crash the node's state is unknown until someone can look at it.
			const error = `Cannot reach the node: ${message}`;
			if (execution.stop.signal.aborted) return;
			await flowFinished(own, {
				task,
				node,
				params: run.params,
				memo: task.memo,
				state: 'failed',
				error,
				// The flow's own records may need to know why (a check records a changed host key).
				connectError: err instanceof SshError ? err : undefined
			});
			await finishTask(task, kind, 'failed', { error, needsAttention: recovering });
			return;
		}
		const pipeline = new Pipeline(own, task, node, conn, run.params, output, execution, run.kind);
		const outcome = recovering ? await pipeline.recover(run.state === 'cancelled') : await pipeline.run();
		// Stopped (a lost lease, a shutdown): another console records this task's end, and the flow's records.
		if (outcome.state === 'abandoned' || execution.stop.signal.aborted) return;
		// Its steps all returned: the session may serve the node's next task (keepWarm takes it only if nothing
		// runs on it; a step cut off closed it). After a cancel, whose commands were killed, it is closed.
		reusable = !execution.cancel.signal.aborted;
		await output.close();
		// The flow's records first: whoever sees the task (or its run) ended then also sees them.
		await flowFinished(own, {
			task,
			node,
			params: run.params,
			memo: pipeline.memoNow,
			state: outcome.state as TaskEnd['state'],
			error: outcome.error ?? null
		});
		await finishTask(task, kind, outcome.state, outcome);
	} catch (err) {
		if (stopsEverything(err)) return;
		log.error({ err: loggableError(err), taskId }, 'task failed unexpectedly');
		await finishTask(task, kind, 'failed', {
			error: `Engine error: ${(err as Error).message}`,
			needsAttention: true
		}).catch(() => {});
	} finally {
		await output.close();
		// Every step has returned by now (an interrupted one is awaited), so nothing still uses the connection.
		if (conn) {
			if (reusable) keepWarm(conn);
			else conn.close();
			sshConnectionsChanged(-1);
		}
		// Not awaited: this task's slot frees at once, and the next job goes to whichever instance has a free
		// slot when the dispatch's notification arrives, not always to the one whose task just ended.
		void dispatchRun(task.runId).catch((err) => log.warn({ err: loggableError(err) }, 'dispatch after task failed'));
	}
}

async function emitTaskState(task: Task, state: TaskState, data: Record<string, unknown> = {}): Promise<void> {
	await recordEvent({
		type: 'task.state',
		runId: task.runId,
		taskId: task.id,
		nodeId: task.nodeId,
		data: { state, node: task.nodeName, ...data }
	});
}

interface Outcome {
	state: TaskState | 'abandoned';
	error?: string | null;
	needsAttention?: boolean;
}

async function flowFinished(flow: Flow, end: TaskEnd): Promise<void> {
	try {
		await flow.finished?.(end);
	} catch (err) {
		log.error({ err: loggableError(err), taskId: end.task.id }, 'flow bookkeeping after a task failed');
	}
}

/** Writes the task's end, only if this instance still holds it; says whether it did. */
async function finishTask(
	task: Task,
	kind: string,
	state: TaskState,
	o: Omit<Outcome, 'state'> = {}
): Promise<boolean> {
	const times = await endTask({
		taskId: task.id,
		state,
		error: o.error ?? null,
		needsAttention: o.needsAttention ?? false
	});
	if (!times) return false;
	// Only flows that change nodes count towards the update metrics; a check of an unreachable node is no failed update.
	const flow = flowFor(kind);
	taskFinished({ ...task, ...times, state }, kind, !!flow && !flow.readOnly);
	await emitTaskState(task, state, { error: o.error ?? null, needs_attention: o.needsAttention ?? false });
	return true;
}

/** How a step ended: done, or why not and whether its `do` ran at all (a step never begun needs no undo). */
type StepResult = 'ok' | { error: Error; ran: boolean };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Resolves `ms` after any of `signals` aborts (never, if none does). `done` takes back its timer and
 * listeners once the caller no longer waits, so that nothing is left behind to keep the process alive.
 */
function graceAfter(signals: AbortSignal[], ms: number): { over: Promise<'grace over'>; done(): void } {
	let timer: NodeJS.Timeout | undefined;
	const start = () => {
		timer ??= setTimeout(() => resolve('grace over'), ms);
	};
	let resolve: (v: 'grace over') => void = () => {};
	const over = new Promise<'grace over'>((r) => (resolve = r));
	for (const s of signals) {
		if (s.aborted) start();
		else s.addEventListener('abort', start, { once: true });
	}
	return {
		over,
		done: () => {
			clearTimeout(timer);
			for (const s of signals) s.removeEventListener('abort', start);
		}
	};
}

/** Runs a flow's steps on one node with rollback; one instance per task execution. */
class Pipeline {
	private memo: Record<string, unknown>;
	/** The memo as last written, so that a step which remembered nothing costs no write. */
	private savedMemo: string;

	constructor(
		private readonly flow: Flow,
		private readonly task: Task,
		private readonly node: Node,
		/** None for a flow that does not connect. */
		private readonly conn: SshConnection | undefined,
		private readonly params: Record<string, unknown>,
		private readonly output: TaskOutput,
		private readonly execution: Execution,
		private readonly kind: string
	) {
		this.memo = { ...task.memo };
		this.savedMemo = JSON.stringify(this.memo);
	}

	/** What interrupts the task now, if anything: a stop (lease lost, shutdown) before a cancel. */
	private interruption(): Interrupted | undefined {
		const { stop, cancel } = this.execution;
		return (stop.signal.reason ?? cancel.signal.reason) as Interrupted | undefined;
	}

	/** The signals that interrupt a phase: a stop always; a cancel only what is not cancel-proof. */
	private signalsFor(cancelProof: boolean): AbortSignal[] {
		const { stop, cancel } = this.execution;
		return cancelProof ? [stop.signal] : [stop.signal, cancel.signal];
	}

	get memoNow(): Record<string, unknown> {
		return this.memo;
	}

	/** At a step boundary during a shutdown: the task is left as it is, for recovery. */
	private leftForShutdown(): boolean {
		if (!draining) return false;
		this.output.add('engine', 'The console is shutting down: the rest of this task is left for recovery');
		return true;
	}

	async run(): Promise<Outcome> {
		const completed: Step[] = [];
		for (const step of this.flow.steps) {
			if (this.leftForShutdown()) return { state: 'abandoned' };
			const result = await this.runStep(step, 'do');
			if (result === 'ok') {
				completed.push(step);
				continue;
			}
			const { error: err, ran } = result;
			if (stopsEverything(err)) return { state: 'abandoned' };
			const error = err instanceof SkipTask ? err.message : `${step.name}: ${err.message}`;
			// Still running, or its connection cut under it: what the node is now is unknown.
			if (err instanceof Unstoppable) return { state: 'failed', error, needsAttention: true };
			// A step that failed or was interrupted may have half-happened: its own undo runs first. A skip touched nothing.
			const toUndo = ran && !(err instanceof SkipTask) ? [...completed, step] : completed;
			const rollback = await this.rollback(toUndo);
			if (rollback === 'abandoned') return { state: 'abandoned' };
			if (rollback === 'failed') return { state: 'failed', error, needsAttention: true };
			if (err instanceof Interrupted && err.reason === 'cancelled') return { state: 'cancelled', error };
			if (err instanceof SkipTask) return { state: 'skipped', error };
			// Rolled back only when an undo really put something back; a failure that nothing undid is a failure.
			return { state: rollback === 'undone' ? 'rolled_back' : 'failed', error };
		}
		return { state: 'succeeded' };
	}

	/**
	 * A task found running with an expired lease: its instance died or shut down. A rollback that was under
	 * way is finished; otherwise the flow's `inspect` says what the node really is (without one, every step
	 * that started is undone). A task of a cancelled run is never restarted.
	 */
	async recover(runCancelled: boolean): Promise<Outcome> {
		const recorded = await db()
			.select({ name: taskSteps.name, phase: taskSteps.phase })
			.from(taskSteps)
			.where(eq(taskSteps.taskId, this.task.id))
			.orderBy(asc(taskSteps.id));
		// Steps that ended before the crash, and the one in flight, which may have half-happened.
		const started = recorded.filter((s) => s.phase === 'do');
		const wasRollingBack = recorded.some((s) => s.phase === 'undo');
		await db()
			.update(taskSteps)
			.set({ state: 'failed', error: 'The console stopped during this step', endedAt: new Date() })
			.where(and(eq(taskSteps.taskId, this.task.id), eq(taskSteps.state, 'running')));
		this.output.add('engine', `Recovering after the console stopped (attempt ${this.task.attempt})`);
		type Decision = 'completed' | 'restart' | 'rollback';
		let decision: Decision = 'rollback';
		if (wasRollingBack) {
			this.output.add('engine', 'A rollback was under way: finishing it');
		} else if (this.flow.inspect) {
			const inspect = this.flow.inspect;
			const found: { value: Decision } = { value: 'rollback' };
			const r = await this.runStep(
				{
					name: 'inspect',
					do: async (ctx) => {
						found.value = await inspect(ctx);
					}
				},
				'inspect',
				true
			);
			if (r !== 'ok' && stopsEverything(r.error)) return { state: 'abandoned' };
			if (r !== 'ok') return { state: 'failed', error: `inspect: ${r.error.message}`, needsAttention: true };
			decision = found.value;
			this.output.add('engine', `Inspection: ${decision}`);
		}
		if (decision === 'restart' && runCancelled) {
			this.output.add('engine', 'The run was cancelled: what started is rolled back instead of run again');
			decision = 'rollback';
		}
		if (decision === 'completed') return { state: 'succeeded' };
		if (decision === 'restart') return this.run();
		const names = new Set(started.map((s) => s.name));
		const toUndo = this.flow.steps.filter((s) => names.has(s.name));
		const rollback = await this.rollback(toUndo);
		if (rollback === 'abandoned') return { state: 'abandoned' };
		const error = runCancelled
			? 'Cancelled while the console was stopped; what had started was rolled back'
			: 'The console stopped mid-task; what had started was rolled back';
		if (rollback === 'failed') return { state: 'failed', error, needsAttention: true };
		if (runCancelled) return { state: 'cancelled', error };
		return { state: rollback === 'undone' ? 'rolled_back' : 'failed', error };
	}

	/**
	 * Undoes steps in reverse, then verifies health. A cancel does not stop a rollback; a shutdown does. Says
	 * `nothing` when none of the steps has an undo: no undo ran, so the task is no `rolled_back` one.
	 */
	private async rollback(steps: Step[]): Promise<'undone' | 'nothing' | 'failed' | 'abandoned'> {
		const undoable = steps.filter((s) => s.undo).reverse();
		if (!undoable.length) return 'nothing';
		rollbackPerformed(this.kind);
		for (const step of undoable) {
			if (this.leftForShutdown()) return 'abandoned';
			const r = await this.runStep({ ...step, do: step.undo!, retry: step.retry }, 'undo', true);
			if (r !== 'ok') return stopsEverything(r.error) ? 'abandoned' : 'failed';
		}
		if (this.flow.verify) {
			if (this.leftForShutdown()) return 'abandoned';
			const r = await this.runStep({ name: 'verify', do: this.flow.verify }, 'verify', true);
			if (r !== 'ok') return stopsEverything(r.error) ? 'abandoned' : 'failed';
		}
		return 'undone';
	}

	/**
	 * Runs one step with its deadline and retries; records it and its output. `cancelProof` lets rollback
	 * steps (and inspection) run to the end after an operator's cancel.
	 */
	private async runStep(step: Step, phase: StepPhase, cancelProof = false): Promise<StepResult> {
		const attempts = Math.max(1, step.retry?.attempts ?? 1);
		let last: StepResult = { error: new Error('not run'), ran: false };
		let ran = false;
		for (let attempt = 1; attempt <= attempts; attempt++) {
			const reason = this.interruption();
			if (reason && (!cancelProof || stopsEverything(reason))) return { error: reason, ran };
			const result = await this.attemptStep(step, phase, attempt, cancelProof);
			if (result === 'ok') return 'ok';
			ran ||= result.ran;
			last = { error: result.error, ran };
			const e = result.error;
			if (e instanceof Interrupted || e instanceof SkipTask || e instanceof Unstoppable || attempt === attempts) break;
			this.output.add('engine', `${step.name} failed (${e.message}); retrying in ${step.retry!.delayMs} ms`);
			const interrupted = graceAfter(this.signalsFor(cancelProof), 0);
			await Promise.race([sleep(step.retry!.delayMs), interrupted.over]);
			interrupted.done();
		}
		return last;
	}

	private async attemptStep(step: Step, phase: StepPhase, attempt: number, cancelProof: boolean): Promise<StepResult> {
		const started = await startStep({ taskId: this.task.id, name: step.name, phase, attempt });
		// Fenced by the lease: no row, then another instance holds the task now. Nothing was run.
		if (!started) return { error: new Interrupted('lease_lost'), ran: false };
		// The run's row is the cancel's carrier: seen here even if no event ever said so.
		if (started.runState === 'cancelled') this.execution.cancel.abort(new Interrupted('cancelled'));
		const deadlineMs = step.deadlineMs ?? DEFAULT_STEP_DEADLINE_MS;
		const stepController = new AbortController();
		const signals = this.signalsFor(cancelProof);
		const onAbort = () => stepController.abort(this.interruption());
		for (const s of signals) s.addEventListener('abort', onAbort);
		if (signals.some((s) => s.aborted)) onAbort();
		const deadline = setTimeout(() => stepController.abort(new Interrupted('deadline')), deadlineMs);
		this.output.setStep(step.name);
		void recordEvent({
			type: 'step.started',
			runId: this.task.runId,
			taskId: this.task.id,
			nodeId: this.task.nodeId,
			data: { name: step.name, phase, attempt, node: this.task.nodeName }
		});
		const startedAt = performance.now();
		let exitCode: number | null = null;
		let error: Error | undefined;
		// A step interrupted before it began is not begun at all.
		const ran = !stepController.signal.aborted;
		try {
			if (!ran) throw stepController.signal.reason;
			await this.settle(
				step.name,
				step.do(this.context(stepController.signal, deadlineMs, (code) => (exitCode = code))),
				stepController.signal
			);
		} catch (err) {
			error = err instanceof Error ? err : new Error(String(err));
			// Whatever the step threw once interrupted (a killed command, a closed channel) is the interruption.
			if (stepController.signal.aborted && !(error instanceof Interrupted) && !(error instanceof Unstoppable)) {
				error = stepController.signal.reason as Error;
			}
		} finally {
			clearTimeout(deadline);
			for (const s of signals) s.removeEventListener('abort', onAbort);
		}
		const durationMs = Math.round(performance.now() - startedAt);
		// A skip ends the step as it should, so it counts as succeeded; a cancel is not a failure.
		const state =
			!error || error instanceof SkipTask
				? 'succeeded'
				: error instanceof Interrupted && error.reason === 'cancelled'
					? 'cancelled'
					: 'failed';
		if (error && !(error instanceof SkipTask)) this.output.add('engine', `${step.name}: ${error.message}`);
		if (error instanceof SkipTask) this.output.add('engine', `Skipped: ${error.message}`);
		if (!(error instanceof Interrupted && error.reason === 'lease_lost')) {
			const memo = JSON.stringify(this.memo);
			const memoChanged = memo !== this.savedMemo;
			const held = await endStep({
				id: started.id,
				taskId: this.task.id,
				state,
				exitCode,
				error: error?.message ?? null,
				memo: memoChanged ? this.memo : undefined
			});
			if (!held) error = new Interrupted('lease_lost');
			else if (memoChanged) this.savedMemo = memo;
		}
		stepFinished(this.kind, step.name, phase, state, durationMs / 1000);
		void recordEvent({
			type: 'step.ended',
			runId: this.task.runId,
			taskId: this.task.id,
			nodeId: this.task.nodeId,
			data: {
				name: step.name,
				phase,
				attempt,
				state,
				exit_code: exitCode,
				duration_ms: durationMs,
				error: error?.message ?? null,
				node: this.task.nodeName
			}
		});
		return error ? { error, ran } : 'ok';
	}

	/**
	 * Waits for a step to return. Once interrupted, its commands are being killed on the node and it has
	 * INTERRUPT_GRACE_MS to return; one that does not (a transfer or a wait that ignores the signal) is cut
	 * off by closing the connection, which ends every command and transfer on it, and awaited once more. A
	 * step is never left running behind the task's back: its undo would race it.
	 */
	private async settle(name: string, work: Promise<void>, signal: AbortSignal): Promise<void> {
		const done = work.then(
			() => undefined,
			(err: unknown) => err
		);
		const grace = graceAfter([signal], INTERRUPT_GRACE_MS);
		const first = await Promise.race([done, grace.over]);
		grace.done();
		if (first !== 'grace over') {
			if (first !== undefined) throw first;
			return;
		}
		const s = INTERRUPT_GRACE_MS / 1000;
		this.output.add('engine', `${name} did not stop within ${s} s of being interrupted: closing the connection`);
		this.conn?.close();
		let timer: NodeJS.Timeout | undefined;
		const cut = await Promise.race([
			done,
			new Promise<'grace over'>((r) => (timer = setTimeout(() => r('grace over'), INTERRUPT_GRACE_MS)))
		]);
		clearTimeout(timer);
		throw new Unstoppable(
			cut === 'grace over'
				? `did not stop when interrupted, nor when its connection was closed`
				: `did not stop when interrupted; its connection was closed under it`
		);
	}
	private context(signal: AbortSignal, stepDeadlineMs: number, setExit: (code: number | null) => void): StepContext {
		const output = this.output;
		const conn = this.conn;
		const noSession = () => new Error(`The ${this.flow.kind} flow opens no session to the node`);
		const stepStarted = performance.now();
		return {
			task: { id: this.task.id, runId: this.task.runId, attempt: this.task.attempt },
			node: this.node,
			params: this.params,
			memo: this.memo,
			signal,
			get ssh(): SshConnection {
				if (!conn) throw noSession();
				return conn;
			},
			log: (line) => output.add('engine', line),
			skip: (reason) => {
				throw new SkipTask(reason);
			},
			async exec(command, options = {}) {
				if (!conn) throw noSession();
				const remaining = stepDeadlineMs - (performance.now() - stepStarted);
				const deadlineMs = Math.max(1_000, Math.min(options.deadlineMs ?? remaining, remaining));
				const result = await conn.exec(command, {
					deadlineMs,
					signal,
					onLine: ({ stream, line }) => output.add(stream === 'stdout' ? 'out' : 'err', line)
				});
				setExit(result.exitCode);
				if (result.cancelled) throw signal.reason ?? new Interrupted('cancelled');
				if (result.timedOut)
					throw new StepFailed(`timed out after ${Math.round(deadlineMs / 1000)} s`, result.exitCode);
				const ok = options.okExitCodes ?? [0];
				if (result.exitCode === null || !ok.includes(result.exitCode)) {
					const detail = result.stderr.trim().split('\n').at(-1) || result.signal || '';
					throw new StepFailed(
						`exited with ${result.exitCode ?? result.signal}${detail ? `: ${detail}` : ''}`,
						result.exitCode
					);
				}
				return result;
			}
		};
	}
}
