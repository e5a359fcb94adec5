import type { LogLine } from '$lib/log-line';
import { isTaskEnded } from '$lib/states';

/** A run as the run page shows it (the load's snapshot, in the API's snake_case). */
export interface RunView {
	id: string;
	number: number;
	title: string;
	kind: string;
	state: string;
	reason: string | null;
	created_by: string;
	created_at: string;
	started_at: string | null;
	ended_at: string | null;
}

/** One attempt of a step, as the run API lists it: `phase` is do, undo, inspect or verify. */
export interface StepView {
	name: string;
	phase: string;
	attempt: number;
	state: string;
	exit_code: number | null;
	error: string | null;
	started_at: string;
	ended_at: string | null;
}

export interface TaskView {
	id: string;
	node_name: string;
	state: string;
	needs_attention: boolean;
	current_step: string | null;
	attempt: number;
	error: string | null;
	started_at: string | null;
	ended_at: string | null;
	/** Every step attempt so far, when the page shows them (the run page does; the node page shows the log only). */
	steps?: StepView[];
}

/** Whether a task ran a rollback: undos, and the health verification after them. */
export function ranRollback(task: Pick<TaskView, 'steps'>): boolean {
	return !!task.steps?.some((s) => s.phase === 'undo' || s.phase === 'verify');
}

/** An engine event as the streams send it. */
export interface StreamEvent {
	id: number;
	at: string;
	type: string;
	run_id: string | null;
	task_id: string | null;
	data: Record<string, unknown>;
}

export const runEventTypes = ['run.state', 'task.state', 'step.started', 'step.ended', 'task.output'] as const;
/** Lines kept per task in the browser; a chatty task must not grow the page without bound. */
export const MAX_LOG_LINES = 5_000;

/**
 * One run, kept current in place by its event stream. Counts and progress are derived from the tasks, so
 * they can never disagree with the rows on the page.
 */
export class RunLive {
	run: RunView = $state()!;
	tasks: TaskView[] = $state([]);
	logs: Record<string, LogLine[]> = $state({});
	/** Tasks whose earliest output was cut (by the load's backlog limit or MAX_LOG_LINES). */
	truncated: Record<string, boolean> = $state({});
	lastId = 0;
	private byId = new Map<string, TaskView>();

	counts = $derived.by(() => {
		const c: Record<string, number> = { needs_attention: 0 };
		for (const t of this.tasks) {
			c[t.state] = (c[t.state] ?? 0) + 1;
			if (t.needs_attention) c.needs_attention!++;
		}
		return c;
	});
	ended = $derived(this.tasks.filter((t) => isTaskEnded(t.state)).length);
	failed = $derived((this.counts.failed ?? 0) + (this.counts.rolled_back ?? 0));

	constructor(
		snapshot: { run: RunView; tasks: TaskView[]; logs: Record<string, LogLine[]>; truncated: string[] },
		after: number
	) {
		this.run = snapshot.run;
		this.tasks = snapshot.tasks;
		this.logs = snapshot.logs;
		this.truncated = Object.fromEntries(snapshot.truncated.map((id) => [id, true]));
		this.lastId = after;
		// The proxied rows, so that writes through the map are seen by the page.
		for (const t of this.tasks) this.byId.set(t.id, t);
	}

	apply(e: StreamEvent): void {
		// A reconnect resumes by Last-Event-ID, but a stream re-opened after a reload may repeat: skip what we have.
		if (e.id <= this.lastId || e.run_id !== this.run.id) return;
		this.lastId = e.id;
		const d = e.data;
		if (e.type === 'run.state') {
			this.run.state = String(d.state);
			this.run.reason = (d.reason as string | null | undefined) ?? null;
			if (d.state === 'running') this.run.started_at ??= e.at;
			if (d.ended) this.run.ended_at = e.at;
			return;
		}
		const task = e.task_id ? this.byId.get(e.task_id) : undefined;
		if (!task) return;
		if (e.type === 'task.state') {
			task.state = String(d.state);
			if (typeof d.attempt === 'number') task.attempt = d.attempt;
			if (d.needs_attention !== undefined) task.needs_attention = !!d.needs_attention;
			task.error = (d.error as string | undefined) ?? (task.state === 'running' ? null : task.error);
			if (task.state === 'running') {
				task.started_at ??= e.at;
				task.ended_at = null;
			}
			if (isTaskEnded(task.state)) {
				task.ended_at = e.at;
				// The console clears it when a task ends, so a reload shows the same.
				task.current_step = null;
			}
		} else if (e.type === 'step.started') {
			task.current_step = String(d.name);
			const last = task.steps?.at(-1);
			// The snapshot may already hold this step (written just before its event): one attempt never starts
			// twice in a row, so a last step with the same name, phase and attempt is this one.
			if (last && last.name === d.name && last.phase === d.phase && last.attempt === d.attempt) return;
			task.steps?.push({
				name: String(d.name),
				phase: String(d.phase),
				attempt: Number(d.attempt),
				state: 'running',
				exit_code: null,
				error: null,
				started_at: e.at,
				ended_at: null
			});
		} else if (e.type === 'step.ended') {
			const step = task.steps?.findLast((s) => s.name === d.name && s.phase === d.phase && s.attempt === d.attempt);
			if (!step) return;
			step.state = String(d.state);
			step.exit_code = (d.exit_code as number | null | undefined) ?? null;
			step.error = (d.error as string | null | undefined) ?? null;
			step.ended_at = e.at;
		} else if (e.type === 'task.output') {
			const step = typeof d.step === 'string' ? d.step : undefined;
			const lines = ((d.lines as { s: string; t: string }[] | undefined) ?? []).map((l) => ({ ...l, step }));
			// Read back through the state proxy: the array assigned is not the one that reports changes.
			if (!this.logs[task.id]) this.logs[task.id] = [];
			const log = this.logs[task.id]!;
			log.push(...lines);
			if (log.length > MAX_LOG_LINES) {
				log.splice(0, log.length - MAX_LOG_LINES);
				this.truncated[task.id] = true;
			}
		}
	}
}

/**
 * Keeps `live` current from its run's event stream, from event `after` on (the load's snapshot holds what
 * came before). `onStatus` hears whether the stream is connected. Returns the cleanup for `$effect`.
 */
export function followRun(live: RunLive, after: number, onStatus?: (connected: boolean) => void): () => void {
	const source = new EventSource(`/api/runs/${live.run.id}/events?after=${after}`);
	const onEvent = (m: MessageEvent<string>) => live.apply(JSON.parse(m.data) as StreamEvent);
	for (const type of runEventTypes) source.addEventListener(type, onEvent);
	onStatus?.(true);
	source.onerror = () => onStatus?.(source.readyState === EventSource.OPEN);
	source.onopen = () => onStatus?.(true);
	return () => source.close();
}
