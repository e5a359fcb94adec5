import { sql } from 'drizzle-orm';
import { jsonParam, queryRows } from '$lib/server/db';
import type { RunState, StepPhase, StepState, TaskState } from '$lib/server/db/schema';
import { GroupCommit } from './group-commit';
import { instanceId } from './runtime';

/**
 * What running tasks write as they go: their steps, and their end. Each write is awaited by its task, so a
 * step is on record before it touches the node and its end (with the flow's memo) before the next step
 * starts: recovery after a crash relies on both. The writes of all running tasks are grouped
 * (group-commit.ts), one statement per batch.
 *
 * Every write is fenced by the lease: it lands only while this instance still holds the task (lease_owner,
 * state running), so an instance that lost a task to another can never overwrite what the new owner does.
 */

interface StepStart {
	taskId: string;
	name: string;
	phase: StepPhase;
	attempt: number;
}

interface StepEnd {
	id: number;
	taskId: string;
	state: StepState;
	exitCode: number | null;
	error: string | null;
	/** The flow's memo, only when the step changed it. */
	memo?: Record<string, unknown>;
}

/** A step on record: its row, and the state of its run as the same statement saw it. */
export interface StartedStep {
	id: number;
	runState: RunState;
}

// One statement inserts the batch's step rows, sets each task's current step and reads each run's state (a
// cancel is carried by the run's row: the step start is where a task sees it). The batch travels as a
// single JSON parameter, so its size is not bounded by PostgreSQL's limit on parameters.
const starts = new GroupCommit<StepStart, StartedStep | null>(async (items) => {
	const batch = jsonParam(
		items.map((s, i) => ({ i, task_id: s.taskId, name: s.name, phase: s.phase, attempt: s.attempt }))
	);
	const rows = await queryRows<{ id: string | number; task_id: string; run_state: RunState }>(sql`
		with v as (
			select v.*, t.run_id from jsonb_to_recordset(${batch}::jsonb)
				as v(i int, task_id uuid, name text, phase text, attempt int)
			join tasks t on t.id = v.task_id and t.lease_owner = ${instanceId} and t.state = 'running'
		),
		ins as (
			insert into task_steps (task_id, name, phase, attempt, state)
			select task_id, name, phase, attempt, 'running' from v order by i
			returning id, task_id
		),
		cur as (update tasks set current_step = v.name from v where tasks.id = v.task_id)
		select ins.id, ins.task_id, r.state as run_state from ins join v on v.task_id = ins.task_id
			join runs r on r.id = v.run_id`);
	// A task has one step in flight at a time, so its id names its row within a batch.
	const byTask = new Map(rows.map((r) => [r.task_id, { id: Number(r.id), runState: r.run_state }]));
	return items.map((s) => byTask.get(s.taskId) ?? null);
});

const ends = new GroupCommit<StepEnd, boolean>(async (items) => {
	const batch = jsonParam(
		items.map((e) => ({
			id: e.id,
			task_id: e.taskId,
			state: e.state,
			exit_code: e.exitCode,
			error: e.error,
			...(e.memo ? { memo: e.memo } : {})
		}))
	);
	const rows = await queryRows<{ id: string | number }>(sql`
		with v as (
			select v.* from jsonb_to_recordset(${batch}::jsonb)
				as v(id bigint, task_id uuid, state text, exit_code int, error text, memo jsonb)
			join tasks t on t.id = v.task_id and t.lease_owner = ${instanceId} and t.state = 'running'
		),
		m as (update tasks set memo = v.memo from v where tasks.id = v.task_id and v.memo is not null)
		update task_steps set state = v.state, exit_code = v.exit_code, error = v.error, ended_at = now()
		from v where task_steps.id = v.id
		returning task_steps.id`);
	const written = new Set(rows.map((r) => Number(r.id)));
	return items.map((e) => written.has(e.id));
});

/** Records that a step started (and is the task's current step); null when this instance no longer holds the task. */
export function startStep(step: StepStart): Promise<StartedStep | null> {
	return starts.add(step);
}

/** Records how a step ended, with the memo when the step changed it; false when this instance no longer holds the task. */
export function endStep(end: StepEnd): Promise<boolean> {
	return ends.add(end);
}

interface TaskEndWrite {
	taskId: string;
	state: TaskState;
	error: string | null;
	needsAttention: boolean;
}

/** When a task started and ended, as the database recorded them. */
export interface TaskTimes {
	startedAt: Date | null;
	endedAt: Date;
}

// Only a task this instance still holds is ended: one whose lease another instance took is left to it.
const taskEnds = new GroupCommit<TaskEndWrite, TaskTimes | null>(async (items) => {
	const batch = jsonParam(
		items.map((e) => ({ id: e.taskId, state: e.state, error: e.error, needs_attention: e.needsAttention }))
	);
	const rows = await queryRows<{ id: string; started_ms: string | number | null; ended_ms: string | number }>(sql`
		with v as (
			select * from jsonb_to_recordset(${batch}::jsonb) as v(id uuid, state text, error text, needs_attention boolean)
		)
		update tasks set state = v.state, error = v.error, needs_attention = v.needs_attention, current_step = null,
			lease_owner = null, lease_expires_at = null, ended_at = now()
		from v where tasks.id = v.id and tasks.lease_owner = ${instanceId} and tasks.state = 'running'
		returning tasks.id, extract(epoch from tasks.started_at) * 1000 as started_ms,
			extract(epoch from tasks.ended_at) * 1000 as ended_ms`);
	const ended = new Map(rows.map((r) => [r.id, r]));
	return items.map((e) => {
		const r = ended.get(e.taskId);
		if (!r) return null;
		return {
			startedAt: r.started_ms === null ? null : new Date(Number(r.started_ms)),
			endedAt: new Date(Number(r.ended_ms))
		};
	});
});

/** Writes a task's end if this instance still holds it: its times when it did, null when it no longer held it. */
export function endTask(end: TaskEndWrite): Promise<TaskTimes | null> {
	return taskEnds.add(end);
}
