import { and, asc, eq, sql } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { taskSteps, tasks, type Node, type StepPhase, type Task, type TaskState } from '$lib/server/db/schema';
import { getNode, sshTargetFor } from '$lib/server/fleet/nodes';
import { log, loggableError } from '$lib/server/log';
import { connect, type SshConnection } from '$lib/server/ssh/connection';
import { SshError } from '$lib/server/ssh/errors';
import { claimTask } from './claim';
import { dispatchRun } from './dispatch';
import { recordEvent } from './events';
import { endStep, endTask, startStep } from './task-records';
import { flowFor, SkipTask, StepFailed, type Flow, type Step, type StepContext, type TaskEnd } from './flows';
import { sshConnectionsChanged, stepFinished, taskFinished, rollbackPerformed } from './metrics';
import { TaskOutput } from './output';
import { instanceId, settings } from './runtime';

const DEFAULT_STEP_DEADLINE_MS = 5 * 60_000;

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

/** Tasks this instance is executing, so that cancels and lease losses can reach them. */
const active = new Map<string, { runId: string; controller: AbortController }>();

export function activeTaskCount(): number {
	return active.size;
}

/** Aborts this instance's tasks of a run (a cancel from any instance arrives here through the event bus). */
export function interruptRun(runId: string, reason: AbortReason): void {
	for (const a of active.values()) if (a.runId === runId) a.controller.abort(new Interrupted(reason));
}

export function interruptAll(reason: AbortReason): void {
	for (const a of active.values()) a.controller.abort(new Interrupted(reason));
}

/** Extends the leases of every task this instance runs; a task whose lease is gone is stopped at once. */
export async function renewLeases(): Promise<void> {
	if (!active.size) return;
	// Only tasks already here before the update can be judged by it: their claims committed before it began,
	// so a missing row means the lease is really gone. A task claimed while the update waited for a busy
	// database is not in its result and must not be stopped as lost (it would be left running, unowned in
	// practice, until the sweep "recovers" it and rolls it back).
	const before = [...active.entries()];
	const renewed = await db()
		.update(tasks)
		.set({ leaseExpiresAt: sql`now() + ${`${settings().leaseMs} milliseconds`}::interval` })
		.where(and(eq(tasks.leaseOwner, instanceId), eq(tasks.state, 'running')))
		.returning({ id: tasks.id });
	const mine = new Set(renewed.map((r) => r.id));
	for (const [taskId, a] of before) {
		if (!mine.has(taskId)) a.controller.abort(new Interrupted('lease_lost'));
	}
}

/** Thrown to pg-boss so that it retries the job later. */
export class RetryLater extends Error {}

/**
 * Executes one task: the pg-boss handler. Whatever happens on the node, the task ends in a true terminal
 * state in the database, or (when this instance loses its lease) is left for the instance that took it.
 */
export async function executeTask(taskId: string): Promise<void> {
	// Still executing here: a lease that ran out only means its renewal was late (a busy database), not that
	// this instance died. Recovering it would run the task twice at once on its node; the renewal either
	// extends the lease or, if another instance took the task meanwhile, stops this execution.
	if (active.has(taskId)) return;
	const claim = await claimTask(taskId);
	if (claim.kind === 'done') return;
	if (claim.kind === 'retry_later') throw new RetryLater(`Task ${taskId} not claimed: ${claim.why}`);
	const { task, run, recovering, credential } = claim;
	const controller = new AbortController();
	active.set(task.id, { runId: task.runId, controller });
	const output = new TaskOutput({ runId: task.runId, taskId: task.id, nodeId: task.nodeId });
	let conn: SshConnection | undefined;
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
		const node = claim.node ?? (await getNode(task.nodeId));
		try {
			conn = await connect(await sshTargetFor(node, 0, credential), { readyTimeoutMs: 15_000 });
			sshConnectionsChanged(+1);
		} catch (err) {
			const message = err instanceof SshError ? err.message : (err as Error).message;
			// After a crash the node's state is unknown until someone can look at it.
			const error = `Cannot reach the node: ${message}`;
			if (await finishTask(task, kind, 'failed', { error, needsAttention: recovering })) {
				await flowFinished(flow, { task, node, params: run.params, memo: task.memo, state: 'failed', error });
			}
			return;
		}
		const pipeline = new Pipeline(flow, task, node, conn, run.params, output, controller.signal, run.kind);
		const outcome = recovering ? await pipeline.recover() : await pipeline.run();
		if (outcome.state === 'abandoned') return;
		await output.close();
		if (await finishTask(task, kind, outcome.state, outcome)) {
			await flowFinished(flow, {
				task,
				node,
				params: run.params,
				memo: pipeline.memoNow,
				state: outcome.state as TaskEnd['state'],
				error: outcome.error ?? null
			});
		}
	} catch (err) {
		if (err instanceof Interrupted && err.reason === 'lease_lost') return;
		log.error({ err: loggableError(err), taskId }, 'task failed unexpectedly');
		await finishTask(task, kind, 'failed', {
			error: `Engine error: ${(err as Error).message}`,
			needsAttention: true
		}).catch(() => {});
	} finally {
		await output.close();
		if (conn) {
			conn.close();
			sshConnectionsChanged(-1);
		}
		active.delete(task.id);
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

/** Runs a flow's steps on one node with rollback; one instance per task execution. */
class Pipeline {
	private memo: Record<string, unknown>;
	/** The memo as last written, so that a step which remembered nothing costs no write. */
	private savedMemo: string;

	constructor(
		private readonly flow: Flow,
		private readonly task: Task,
		private readonly node: Node,
		private readonly conn: SshConnection,
		private readonly params: Record<string, unknown>,
		private readonly output: TaskOutput,
		private readonly signal: AbortSignal,
		private readonly kind: string
	) {
		this.memo = { ...task.memo };
		this.savedMemo = JSON.stringify(this.memo);
	}

	get memoNow(): Record<string, unknown> {
		return this.memo;
	}

	async run(): Promise<Outcome> {
		const completed: Step[] = [];
		for (const step of this.flow.steps) {
			const result = await this.runStep(step, 'do');
			if (result === 'ok') {
				completed.push(step);
				continue;
			}
			if (result instanceof Interrupted && result.reason === 'lease_lost') return { state: 'abandoned' };
			const cancelled =
				result instanceof Interrupted && (result.reason === 'cancelled' || result.reason === 'shutdown');
			const skipped = result instanceof SkipTask;
			const rollback = await this.rollback(completed);
			if (rollback === 'abandoned') return { state: 'abandoned' };
			const error = skipped ? result.message : `${step.name}: ${(result as Error).message}`;
			if (rollback === 'failed') return { state: 'failed', error, needsAttention: true };
			if (cancelled) return { state: 'cancelled', error };
			if (skipped) return { state: 'skipped', error };
			return { state: completed.length ? 'rolled_back' : 'failed', error };
		}
		return { state: 'succeeded' };
	}

	/**
	 * A task found running with an expired lease: its instance died. The flow's `inspect` says what the
	 * node really is; without one, every step that started is undone.
	 */
	async recover(): Promise<Outcome> {
		const started = await db()
			.select({ name: taskSteps.name })
			.from(taskSteps)
			.where(and(eq(taskSteps.taskId, this.task.id), eq(taskSteps.phase, 'do')))
			.orderBy(asc(taskSteps.id));
		// Steps that ended before the crash, and the one in flight, which may have half-happened.
		await db()
			.update(taskSteps)
			.set({ state: 'failed', error: 'The console stopped during this step', endedAt: new Date() })
			.where(and(eq(taskSteps.taskId, this.task.id), eq(taskSteps.state, 'running')));
		this.output.add('engine', `Recovering after the console stopped (attempt ${this.task.attempt})`);
		type Decision = 'completed' | 'restart' | 'rollback';
		let decision: Decision = 'rollback';
		if (this.flow.inspect) {
			const inspect = this.flow.inspect;
			const found: { value: Decision } = { value: 'rollback' };
			const r = await this.runStep(
				{
					name: 'inspect',
					do: async (ctx) => {
						found.value = await inspect(ctx);
					}
				},
				'inspect'
			);
			if (r instanceof Interrupted && r.reason === 'lease_lost') return { state: 'abandoned' };
			if (r !== 'ok') return { state: 'failed', error: `inspect: ${r.message}`, needsAttention: true };
			decision = found.value;
		}
		this.output.add('engine', `Inspection: ${decision}`);
		if (decision === 'completed') return { state: 'succeeded' };
		if (decision === 'restart') return this.run();
		const names = new Set(started.map((s) => s.name));
		const toUndo = this.flow.steps.filter((s) => names.has(s.name));
		const rollback = await this.rollback(toUndo);
		if (rollback === 'abandoned') return { state: 'abandoned' };
		const error = 'The console stopped mid-task; what had started was rolled back';
		if (rollback === 'failed') return { state: 'failed', error, needsAttention: true };
		return { state: toUndo.length ? 'rolled_back' : 'failed', error };
	}

	/** Undoes completed steps in reverse, then verifies health. A cancel does not stop a rollback. */
	private async rollback(completed: Step[]): Promise<'ok' | 'failed' | 'abandoned'> {
		const undoable = completed.filter((s) => s.undo).reverse();
		if (!undoable.length) return 'ok';
		rollbackPerformed(this.kind);
		for (const step of undoable) {
			const r = await this.runStep({ ...step, do: step.undo!, retry: step.retry }, 'undo', true);
			if (r instanceof Interrupted && r.reason === 'lease_lost') return 'abandoned';
			if (r !== 'ok') return 'failed';
		}
		if (this.flow.verify) {
			const verify = this.flow.verify;
			const r = await this.runStep({ name: 'verify', do: verify }, 'verify', true);
			if (r instanceof Interrupted && r.reason === 'lease_lost') return 'abandoned';
			if (r !== 'ok') return 'failed';
		}
		return 'ok';
	}

	/**
	 * Runs one step with its deadline and retries; records it and its output. Returns 'ok' or why it failed.
	 * `ignoreCancel` lets rollback steps run to the end after an operator's cancel.
	 */
	private async runStep(step: Step, phase: StepPhase, ignoreCancel = false): Promise<'ok' | Error> {
		const attempts = Math.max(1, step.retry?.attempts ?? 1);
		let last: Error = new Error('not run');
		for (let attempt = 1; attempt <= attempts; attempt++) {
			// A lost lease stops even a rollback; a cancel stops everything but a rollback.
			const reason = this.signal.reason as Interrupted | undefined;
			if (reason && (!ignoreCancel || reason.reason === 'lease_lost')) return reason;
			const result = await this.attemptStep(step, phase, attempt, ignoreCancel);
			if (result === 'ok') return 'ok';
			last = result;
			if (result instanceof Interrupted || result instanceof SkipTask || attempt === attempts) break;
			this.output.add('engine', `${step.name} failed (${result.message}); retrying in ${step.retry!.delayMs} ms`);
			await new Promise((r) => setTimeout(r, step.retry!.delayMs));
		}
		return last;
	}

	private async attemptStep(
		step: Step,
		phase: StepPhase,
		attempt: number,
		ignoreCancel: boolean
	): Promise<'ok' | Error> {
		const deadlineMs = step.deadlineMs ?? DEFAULT_STEP_DEADLINE_MS;
		const stepController = new AbortController();
		const onAbort = () => {
			const reason = this.signal.reason as Interrupted;
			if (ignoreCancel && reason.reason !== 'lease_lost') return;
			stepController.abort(reason);
		};
		this.signal.addEventListener('abort', onAbort);
		if (this.signal.aborted) onAbort();
		const deadline = setTimeout(() => stepController.abort(new Interrupted('deadline')), deadlineMs);
		const stepId = await startStep({ taskId: this.task.id, name: step.name, phase, attempt });
		this.output.setStep(step.name);
		void recordEvent({
			type: 'step.started',
			runId: this.task.runId,
			taskId: this.task.id,
			nodeId: this.task.nodeId,
			data: { name: step.name, phase, attempt, node: this.task.nodeName }
		});
		const started = performance.now();
		let exitCode: number | null = null;
		let error: Error | undefined;
		try {
			await Promise.race([
				step.do(this.context(stepController.signal, deadlineMs, (code) => (exitCode = code))),
				new Promise<never>((_, reject) => {
					const fail = () => reject(stepController.signal.reason);
					if (stepController.signal.aborted) fail();
					stepController.signal.addEventListener('abort', fail, { once: true });
				})
			]);
		} catch (err) {
			error = err instanceof Error ? err : new Error(String(err));
			if (stepController.signal.aborted && !(error instanceof Interrupted)) {
				error = stepController.signal.reason as Error;
			}
		} finally {
			clearTimeout(deadline);
			this.signal.removeEventListener('abort', onAbort);
		}
		const durationMs = Math.round(performance.now() - started);
		// A skip ends the step as it should, so it counts as succeeded; a cancel is not a failure.
		const state =
			!error || error instanceof SkipTask
				? 'succeeded'
				: error instanceof Interrupted && error.reason === 'cancelled'
					? 'cancelled'
					: 'failed';
		if (error && !(error instanceof SkipTask)) this.output.add('engine', `${step.name}: ${error.message}`);
		if (error instanceof SkipTask) this.output.add('engine', `Skipped: ${error.message}`);
		const lost = error instanceof Interrupted && error.reason === 'lease_lost';
		if (!lost) {
			const memo = JSON.stringify(this.memo);
			const memoChanged = memo !== this.savedMemo;
			await endStep({
				id: stepId,
				taskId: this.task.id,
				state,
				exitCode,
				error: error?.message ?? null,
				memo: memoChanged ? this.memo : undefined
			});
			if (memoChanged) this.savedMemo = memo;
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
		return error ?? 'ok';
	}

	private context(signal: AbortSignal, stepDeadlineMs: number, setExit: (code: number | null) => void): StepContext {
		const output = this.output;
		const conn = this.conn;
		const stepStarted = performance.now();
		return {
			task: { id: this.task.id, runId: this.task.runId, attempt: this.task.attempt },
			node: this.node,
			params: this.params,
			memo: this.memo,
			signal,
			ssh: conn,
			log: (line) => output.add('engine', line),
			skip: (reason) => {
				throw new SkipTask(reason);
			},
			async exec(command, options = {}) {
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
