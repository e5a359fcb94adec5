import type { Node } from '$lib/server/db/schema';
import type { ExecResult, SshConnection } from '$lib/server/ssh/connection';
import type { SshError } from '$lib/server/ssh/errors';
import type { ShellCommand } from '$lib/server/ssh/shell';

/**
 * A flow is what a run's tasks do on each node: a plain declaration of steps. Later features (code sync,
 * apt, certificates, A/B images) each declare one; the engine runs them all the same way.
 */
export interface Flow<Params = Record<string, unknown>> {
	/** The run kind this flow executes; also names its pg-boss queue. */
	kind: string;
	/** What a run of it is called in titles ("Check"); the kind when absent. */
	title?: string;
	/** Checks and normalises a run's parameters before any task starts; throw a ServiceError to refuse. */
	parseParams?(params: unknown): Params;
	steps: Step<Params>[];
	/**
	 * After a crash the engine does not know how far a task got. `inspect` looks at the node's real state
	 * and says what to do: `completed` (the work is done), `restart` (nothing happened, run it again) or
	 * `rollback` (undo every step that started). Without it the engine rolls back.
	 */
	inspect?(ctx: StepContext<Params>): Promise<'completed' | 'restart' | 'rollback'>;
	/** Health verification after a rollback; throwing marks the task as needing attention. */
	verify?(ctx: StepContext<Params>): Promise<void>;
	/** Only looks at nodes (a check, a scan): its tasks stay out of the update_* metrics. */
	readOnly?: boolean;
	/**
	 * Called once per task of this flow as it ends on this instance, whatever the outcome, for the flow's own
	 * records (e.g. a failed update noted on the node): just before the task's end is written, so that whoever
	 * sees the task (or its run) ended also sees these records. Database only: the steps are over. An error
	 * here is logged and never changes the task's outcome.
	 */
	finished?(end: TaskEnd<Params>): Promise<void>;
	/**
	 * The flow that runs this node's task instead, when the node is reached another way (an agent on it that
	 * pulls its work): looked at once per task execution, before any session is opened. Undefined: this flow.
	 */
	variant?(node: Node): Promise<Flow<Params> | undefined>;
	/**
	 * False for a flow whose steps run nothing on the node over SSH (the node's own agent does the work and
	 * the steps wait for its reports): its tasks open no session, and `ctx.exec`/`ctx.ssh` throw.
	 */
	connects?: boolean;
	/**
	 * Every task opens a session of its own, never a warm one another task or check left (ssh/warm.ts): for a
	 * check, which proves the node completes a handshake with its pinned key now.
	 */
	freshSession?: boolean;
}

export interface TaskEnd<Params = Record<string, unknown>> {
	task: { id: string; runId: string };
	node: Node;
	params: Params;
	memo: Record<string, unknown>;
	state: 'succeeded' | 'failed' | 'rolled_back' | 'cancelled' | 'skipped';
	error: string | null;
	/**
	 * When the task ended because no session to the node could be opened (before any step ran): the SSH layer's
	 * error, which says why (nothing answered, another host key, an unknown one, the credential refused) and
	 * carries the key the node presented. `error` only has its words.
	 */
	connectError?: SshError;
}

export interface Step<Params = Record<string, unknown>> {
	name: string;
	do(ctx: StepContext<Params>): Promise<void>;
	/** Reverses `do`. Must be safe to run more than once: after a crash it may run on a half-done step. */
	undo?(ctx: StepContext<Params>): Promise<void>;
	/** The step's whole budget, commands included. */
	deadlineMs?: number;
	/** Only for steps that are idempotent: running them twice must equal running them once. */
	retry?: { attempts: number; delayMs: number };
}

export interface StepContext<Params = Record<string, unknown>> {
	readonly task: { id: string; runId: string; attempt: number };
	readonly node: Node;
	readonly params: Params;
	/** Kept in the task row after every step, so an undo after a crash still knows (e.g. the previous commit). */
	readonly memo: Record<string, unknown>;
	/** Aborted on cancel, on the step's deadline and when this instance loses the task's lease. */
	readonly signal: AbortSignal;
	readonly ssh: SshConnection;
	/**
	 * Runs a command on the node, streaming its output to the task's log. A non-zero exit (other than
	 * those in `okExitCodes`) fails the step.
	 */
	exec(command: ShellCommand, options?: { deadlineMs?: number; okExitCodes?: number[] }): Promise<ExecResult>;
	/** A line of the engine's own in the task's log. */
	log(line: string): void;
	/** Ends the task as skipped, with the reason, after undoing what completed. */
	skip(reason: string): never;
}

/** Thrown by `ctx.skip`. */
export class SkipTask extends Error {}

/** A step failed in a way the flow describes (a command's exit code, a failed check). */
export class StepFailed extends Error {
	constructor(
		message: string,
		readonly exitCode: number | null = null
	) {
		super(message);
	}
}

const registry = new Map<string, Flow>();

export function registerFlow<P>(flow: Flow<P>): void {
	if (!/^[a-z][a-z0-9-]{0,40}$/.test(flow.kind)) throw new Error(`Invalid flow kind ${flow.kind}`);
	registry.set(flow.kind, flow as unknown as Flow);
}

export function flowFor(kind: string): Flow | undefined {
	return registry.get(kind);
}

export function registeredKinds(): string[] {
	return [...registry.keys()];
}
