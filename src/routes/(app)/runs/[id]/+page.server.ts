import { error, redirect } from '@sveltejs/kit';
import { and, desc, eq, lte } from 'drizzle-orm';
import { uuidSchema } from '$lib/schemas/common';
import type { LogLine } from '$lib/log-line';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { db } from '$lib/server/db';
import { events } from '$lib/server/db/schema';
import { lastEventId } from '$lib/server/engine/events';
import { cancelRun, getRun, pauseRun, resumeRun, retryFailed } from '$lib/server/engine/runs';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError } from '$lib/server/http/forms';
import { presentRun, presentTask } from '$lib/server/http/present';
import type { Actions, PageServerLoad, RequestEvent } from './$types';

/** Output events read for the backlog, newest first, and lines kept per task from them. */
const BACKLOG_EVENTS = 5_000;
const BACKLOG_LINES = 500;

function runId(id: string): string {
	// Not a UUID cannot be a run; asking PostgreSQL would only fail on the cast.
	if (!uuidSchema.safeParse(id).success) error(404, 'Run not found');
	return id;
}

/** The output each task printed up to event `upTo`: the stream sends what follows. */
async function outputBacklog(id: string, upTo: number) {
	const rows = await db()
		.select({ taskId: events.taskId, data: events.data })
		.from(events)
		.where(and(eq(events.runId, id), eq(events.type, 'task.output'), lte(events.id, upTo)))
		.orderBy(desc(events.id))
		.limit(BACKLOG_EVENTS);
	const logs: Record<string, LogLine[]> = {};
	const truncated = new Set<string>();
	if (rows.length === BACKLOG_EVENTS) for (const r of rows) if (r.taskId) truncated.add(r.taskId);
	for (const r of rows.reverse()) {
		if (!r.taskId) continue;
		const step = typeof r.data.step === 'string' ? r.data.step : undefined;
		const lines = ((r.data.lines as { s: string; t: string }[] | undefined) ?? []).map((l) => ({
			s: l.s,
			t: l.t,
			step
		}));
		(logs[r.taskId] ??= []).push(...lines);
	}
	for (const [taskId, lines] of Object.entries(logs)) {
		if (lines.length > BACKLOG_LINES) {
			logs[taskId] = lines.slice(-BACKLOG_LINES);
			truncated.add(taskId);
		}
	}
	return { logs, truncated: [...truncated] };
}

export const load: PageServerLoad = async (event) => {
	const id = runId(event.params.id);
	// Taken before the snapshot: a change in between then comes again by the stream, never goes missing.
	const after = await lastEventId();
	let run;
	try {
		run = await getRun(id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, 'Run not found');
		throw err;
	}
	const principal = principalOf(event);
	const { tasks, ...summary } = run;
	return {
		run: presentRun(summary),
		tasks: tasks.map(presentTask),
		...(await outputBacklog(id, after)),
		after,
		canOperate: authorize(event.route.id, 'POST', '?/cancel', principal).allow
	};
};

async function act(event: RequestEvent, change: typeof cancelRun, notice: string) {
	try {
		await change(actorOf(event), runId(event.params.id));
		return { notice };
	} catch (err) {
		return formError(err);
	}
}

export const actions: Actions = {
	cancel: (event) => act(event, cancelRun, 'Run cancelled: running tasks are being stopped and rolled back.'),
	pause: (event) => act(event, pauseRun, 'Run paused: running tasks finish, no new ones start.'),
	resume: (event) => act(event, resumeRun, 'Run resumed.'),
	retryFailed: async (event) => {
		let next;
		try {
			next = await retryFailed(actorOf(event), runId(event.params.id));
		} catch (err) {
			return formError(err);
		}
		redirect(303, `/runs/${next.id}`);
	}
};
