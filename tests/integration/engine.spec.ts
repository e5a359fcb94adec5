import { randomBytes } from 'node:crypto';
import { and, asc, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, queryRows, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { events, tasks } from '../../src/lib/server/db/schema';
import { registerFlow } from '../../src/lib/server/engine/flows';
import { startEngine, stopEngine, sweepRuns } from '../../src/lib/server/engine';
import { registry } from '../../src/lib/server/engine/metrics';
import { cancelRun, createRun, getRun, pauseRun, resumeRun, retryFailed } from '../../src/lib/server/engine/runs';
import { eventStream } from '../../src/lib/server/engine/stream';
import { backends } from '../support/databases';
import { readEventStream, waitFor, waitForRun } from '../support/engine';
import { registerFleet } from '../../src/lib/server/fleet/register';
import { sequenceFlow } from '../support/flows';
import { sh } from '../../src/lib/server/ssh/shell';
import { startSimFleet, type SimFleet } from '../support/sim-fleet';
import { GET as getRunEndpoint } from '../../src/routes/api/runs/[id]/+server';
import { GET as getEventsEndpoint } from '../../src/routes/api/events/+server';
import { eventBus } from '../../src/lib/server/engine/events';

registerFlow(sequenceFlow);
/** The sequence with a health verification after its rollbacks, as flows that change nodes have. */
registerFlow({
	...sequenceFlow,
	kind: 'test-sequence-verified',
	async verify(ctx) {
		await ctx.exec(sh`echo verified`);
	}
});
registerFleet();
/** One node's step fails with a NUL character in its message and its log, as a node printing binary output. */
registerFlow({
	kind: 'test-nul',
	steps: [
		{
			name: 'print',
			async do(ctx) {
				await ctx.exec(sh`sleep 0.1`);
				if (ctx.node.name.endsWith('-0001')) {
					ctx.log('binary\u0000output');
					throw new Error('bad\u0000byte');
				}
			}
		}
	]
});

/**
 * Two steps with nothing to undo, the second failing on the nodes named in `on`, then a third whose undo is never
 * reached: such a task ends failed, since no undo ran (rolled_back would say the node was put back).
 */
for (const [kind, readOnly] of [
	['test-no-undo', false],
	['test-look-fails', true]
] as const) {
	registerFlow<{ on: string[] }>({
		kind,
		readOnly,
		steps: [
			{
				name: 'look',
				async do(ctx) {
					await ctx.exec(sh`true`);
				}
			},
			{
				name: 'change',
				async do(ctx) {
					if (ctx.params.on.includes(ctx.node.name)) await ctx.exec(sh`echo ${'change failed'} >&2; exit 1`);
				}
			},
			{
				name: 'after',
				async do(ctx) {
					await ctx.exec(sh`echo ${'after'}`);
				},
				async undo(ctx) {
					await ctx.exec(sh`echo ${'undo-after'}`);
				}
			}
		]
	});
}

/**
 * A series' value as /metrics shows it (e.g. `flotilla_step_duration_seconds_count`), summed over the series
 * whose labels include `labels`.
 */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
	const base = name.replace(/_(count|sum|bucket)$/, '');
	const found = registry.getSingleMetric(name) ?? registry.getSingleMetric(base);
	if (!found) throw new Error(`No metric ${name}`);
	const { values } = await found.get();
	// A histogram's values carry the series name (`_count`, `_sum`, `_bucket`); a counter's or gauge's do not.
	return values
		.filter((v) => ((v as { metricName?: string }).metricName ?? name) === name)
		.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
		.reduce((sum, v) => sum + v.value, 0);
}

describe.each(backends)('the update engine on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let fleet: SimFleet;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		fleet = await startSimFleet(20, 'eng');
		await startEngine({ concurrency: 50, leaseMs: 5_000, sweepMs: 1_000 });
	}, 60_000);
	afterAll(async () => {
		await stopEngine();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	const outputOf = async (taskId: string) => {
		const rows = await db()
			.select()
			.from(events)
			.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
			.orderBy(asc(events.id));
		return rows.flatMap((r) =>
			(r.data.lines as { s: string; t: string }[]).filter((l) => l.s === 'out').map((l) => l.t)
		);
	};

	it('runs every step of every task and ends succeeded, within the run concurrency', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'all good',
			nodeIds: fleet.nodeIds,
			params: { sleep_s: 0.05 },
			options: { concurrency: 5 }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('succeeded');
		expect(done.counts).toMatchObject({ total: 20, succeeded: 20 });
		for (const t of done.tasks) {
			expect(t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
				'do:step-1:succeeded',
				'do:step-2:succeeded',
				'do:step-3:succeeded',
				'do:step-4:succeeded'
			]);
		}
		expect(await outputOf(done.tasks[0]!.id)).toEqual(['do-1', 'do-2', 'do-3', 'do-4']);
		// No more than 5 tasks were ever running at once.
		const spans = done.tasks.map((t) => [t.startedAt!.getTime(), t.endedAt!.getTime()] as const);
		const peak = Math.max(...spans.map(([s]) => spans.filter(([a, b]) => a <= s && s < b).length));
		expect(peak).toBeLessThanOrEqual(5);
		expect(peak).toBeGreaterThan(1);
	});

	it.each([1, 2, 3, 4])('a failure at step %i undoes that step, then the completed ones, in reverse', async (at) => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: `fail at ${at}`,
			nodeIds: fleet.nodeIds.slice(0, 2),
			params: { fail_at: at }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('failed');
		for (const t of done.tasks) {
			const expected = [
				...Array.from({ length: at - 1 }, (_, i) => `do:step-${i + 1}:succeeded`),
				`do:step-${at}:failed`,
				// The failed step may have half-happened: its own undo runs first.
				...Array.from({ length: at }, (_, i) => `undo:step-${at - i}:succeeded`)
			];
			expect(t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual(expected);
			// An undo ran every time, the failed step's own at least: the node was put back.
			expect(t.state).toBe('rolled_back');
			expect(t.error).toContain(`step-${at}: exited with 1: fail-${at}`);
			expect(t.needsAttention).toBe(false);
			expect(await outputOf(t.id)).toEqual([
				...Array.from({ length: at - 1 }, (_, i) => `do-${i + 1}`),
				...Array.from({ length: at }, (_, i) => `undo-${at - i}`)
			]);
		}
	});

	it('a step that fails with nothing to undo (none before it, none of its own, the later one never reached) ends failed', async () => {
		const names = fleet.hosts.map((h) => h.name);
		const run = await createRun(systemActor, {
			kind: 'test-no-undo',
			title: 'nothing undone',
			nodeIds: fleet.nodeIds.slice(0, 2),
			params: { on: names.slice(0, 1) }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('failed');
		expect(done.tasks.map((t) => [t.nodeName, t.state, t.needsAttention])).toEqual([
			[names[0], 'failed', false],
			[names[1], 'succeeded', false]
		]);
		const [failed, ok] = done.tasks;
		expect(failed!.error).toContain('change: exited with 1: change failed');
		expect(failed!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'do:look:succeeded',
			'do:change:failed'
		]);
		expect(ok!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'do:look:succeeded',
			'do:change:succeeded',
			'do:after:succeeded'
		]);
		expect(done.counts).toMatchObject({ failed: 1, rolled_back: 0, succeeded: 1 });
	});

	it('GET /api/runs/{id} lists every step attempt of a rolled-back task in order, undos and verify included', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence-verified',
			title: 'rollback in the API',
			nodeIds: fleet.nodeIds.slice(0, 1),
			params: { fail_at: 3 }
		});
		await waitForRun(run.id, ['failed']);
		const res = await getRunEndpoint({
			params: { id: run.id },
			url: new URL(`http://console/api/runs/${run.id}`)
		} as never);
		expect(res.status).toBe(200);
		const [task] = (await res.json()).tasks;
		expect(task.state).toBe('rolled_back');
		expect(
			task.steps.map((s: { phase: string; name: string; state: string }) => `${s.phase}:${s.name}:${s.state}`)
		).toEqual([
			'do:step-1:succeeded',
			'do:step-2:succeeded',
			'do:step-3:failed',
			'undo:step-3:succeeded',
			'undo:step-2:succeeded',
			'undo:step-1:succeeded',
			'verify:verify:succeeded'
		]);
		expect(task.steps[2]).toMatchObject({ attempt: 1, exit_code: 1, error: 'exited with 1: fail-3' });
		// Each attempt with its times, one after the other.
		for (const [i, s] of task.steps.entries()) {
			expect(Date.parse(s.ended_at)).toBeGreaterThanOrEqual(Date.parse(s.started_at));
			if (i) expect(Date.parse(s.started_at)).toBeGreaterThanOrEqual(Date.parse(task.steps[i - 1].ended_at));
		}
	});

	it('a rollback that fails leaves the task failed and needing attention', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'undo fails',
			nodeIds: fleet.nodeIds.slice(0, 1),
			params: { fail_at: 3, undo_fails_at: 2 }
		});
		const done = await waitForRun(run.id, ['failed']);
		const [t] = done.tasks;
		expect(t!.state).toBe('failed');
		expect(t!.needsAttention).toBe(true);
		expect(t!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'do:step-1:succeeded',
			'do:step-2:succeeded',
			'do:step-3:failed',
			'undo:step-3:succeeded',
			'undo:step-2:failed'
		]);
		expect(done.counts.needs_attention).toBe(1);
	});

	it('a hung node fails at its deadline without holding up the others', async () => {
		const hung = fleet.hosts[3]!.name;
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'one hangs',
			nodeIds: fleet.nodeIds.slice(0, 8),
			params: { hang_at: 2, on: [hung], step_deadline_ms: 2_000 },
			options: { concurrency: 8 }
		});
		const done = await waitForRun(run.id, ['failed']);
		const others = done.tasks.filter((t) => t.nodeName !== hung);
		expect(others.every((t) => t.state === 'succeeded')).toBe(true);
		const h = done.tasks.find((t) => t.nodeName === hung)!;
		// The others did not wait for it: all of them had finished before its deadline ended its hung step.
		// (Ordering, not a wall-clock limit: timing thresholds belong in benchmarks, not in tests.)
		const hungStep = h.steps.find((s) => s.phase === 'do' && s.name === 'step-2')!;
		expect(hungStep.state).toBe('failed');
		expect(Math.max(...others.map((t) => t.endedAt!.getTime()))).toBeLessThan(hungStep.endedAt!.getTime());
		expect(h.state).toBe('rolled_back');
		expect(h.error).toMatch(/step-2: timed out after 2 s/);
	});

	it('two runs of different kinds on the same nodes at once never run a node twice, and both finish', async () => {
		// Different kinds use different pg-boss queues, so only the tasks table's one-running-task-per-node
		// index keeps them apart: a batch of claims that meets a busy node falls back to claiming one by one.
		const nodeIds = fleet.nodeIds.slice(0, 10);
		const [a, b] = await Promise.all([
			createRun(systemActor, {
				kind: 'test-sequence',
				title: 'overlap A',
				nodeIds,
				params: { sleep_s: 0.2 },
				options: { concurrency: 10 }
			}),
			createRun(systemActor, { kind: 'check', title: 'overlap B', nodeIds, options: { concurrency: 10 } })
		]);
		const [doneA, doneB] = await Promise.all([
			waitForRun(a.id, ['succeeded', 'failed'], 60_000),
			waitForRun(b.id, ['succeeded', 'failed'], 60_000)
		]);
		expect(doneA.counts).toMatchObject({ total: 10, succeeded: 10 });
		expect(doneB.counts).toMatchObject({ total: 10, succeeded: 10 });
		for (const nodeId of nodeIds) {
			const [x, y] = [doneA, doneB].map((r) => r.tasks.find((t) => t.nodeId === nodeId)!);
			const apart = x!.endedAt! <= y!.startedAt! || y!.endedAt! <= x!.startedAt!;
			expect(apart, `node ${x!.nodeName} ran both tasks at once`).toBe(true);
			expect(x!.attempt).toBe(1);
			expect(y!.attempt).toBe(1);
		}
	});

	it('a NUL character in one node’s output or error fails only that node, not the tasks written with it', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-nul',
			title: 'binary output',
			nodeIds: fleet.nodeIds.slice(0, 10),
			options: { concurrency: 10 }
		});
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		const bad = done.tasks.find((t) => t.nodeName.endsWith('-0001'))!;
		expect(done.counts).toMatchObject({ total: 10, succeeded: 9, failed: 1 });
		expect(bad.error).toBe('print: bad\uFFFDbyte');
		expect(bad.steps.map((st) => `${st.name}:${st.state}:${st.error}`)).toEqual(['print:failed:bad\uFFFDbyte']);
		const lines = (
			await db()
				.select()
				.from(events)
				.where(and(eq(events.taskId, bad.id), eq(events.type, 'task.output')))
		).flatMap((r) => (r.data.lines as { t: string }[]).map((l) => l.t));
		expect(lines).toContain('binary\uFFFDoutput');
	});

	it('cancel stops queued tasks at once and kills and rolls back the running ones', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'to cancel',
			nodeIds: fleet.nodeIds,
			params: { hang_at: 2 },
			options: { concurrency: 4 }
		});
		await waitFor('four tasks hanging in step 2', async () => {
			const r = await getRun(run.id);
			return r.tasks.filter((t) => t.currentStep === 'step-2').length === 4;
		});
		await cancelRun(systemActor, run.id);
		// The hung commands sleep 600 s: the run can only end because the cancel killed them.
		const done = await waitForRun(run.id, ['cancelled'], 30_000);
		expect(done.counts).toMatchObject({ total: 20, cancelled: 20 });
		const ran = done.tasks.filter((t) => t.steps.length);
		expect(ran).toHaveLength(4);
		for (const t of ran) {
			expect(t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
				'do:step-1:succeeded',
				'do:step-2:cancelled',
				'undo:step-2:succeeded',
				'undo:step-1:succeeded'
			]);
		}
	});

	it('pause stops dispatching; resume carries on to the end', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'pause me',
			nodeIds: fleet.nodeIds.slice(0, 10),
			params: { sleep_s: 0.1 },
			options: { concurrency: 2 }
		});
		await waitFor('a task running', async () => (await getRun(run.id)).counts.running > 0);
		await pauseRun(systemActor, run.id);
		const paused = await waitFor('running tasks to finish', async () => {
			const r = await getRun(run.id);
			return r.counts.running === 0 && r;
		});
		const ended = paused.counts.succeeded;
		expect(ended).toBeLessThan(10);
		await new Promise((r) => setTimeout(r, 1_500));
		const still = await getRun(run.id);
		expect(still.state).toBe('paused');
		expect(still.counts.succeeded).toBe(ended);
		expect(still.counts.queued).toBe(10 - ended);
		await resumeRun(systemActor, run.id);
		const done = await waitForRun(run.id, ['succeeded']);
		expect(done.counts.succeeded).toBe(10);
	});

	it('pauses itself when failures pass the threshold; retry-failed reruns just the failed nodes', async () => {
		const failing = fleet.hosts.slice(0, 3).map((h) => h.name);
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'threshold',
			nodeIds: fleet.nodeIds,
			params: { fail_at: 2, on: failing },
			options: { concurrency: 1, maxFailures: 2 }
		});
		const paused = await waitForRun(run.id, ['paused']);
		expect(paused.reason).toMatch(/3 tasks failed, more than the 2 allowed/);
		expect(paused.counts.rolled_back).toBe(3);
		expect(paused.counts.queued).toBe(17);
		await cancelRun(systemActor, run.id);
		await waitForRun(run.id, ['cancelled']);
		const retry = await retryFailed(systemActor, run.id);
		expect(retry.parentRunId).toBe(run.id);
		const rows = await db().select().from(tasks).where(eq(tasks.runId, retry.id));
		expect(rows.map((t) => t.nodeName).sort()).toEqual([...failing].sort());
		await waitForRun(retry.id, ['paused', 'failed']);
	});

	it('a failure in a critical phase (control plane first) skips every later phase', async () => {
		const control = new Set(fleet.nodeIds.slice(0, 2));
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'control plane fails',
			nodeIds: fleet.nodeIds.slice(0, 8),
			params: { fail_at: 1, on: [fleet.hosts[1]!.name] },
			options: { concurrency: 8, criticalPhases: [0] },
			phaseOf: (id) => (control.has(id) ? 0 : 1)
		});
		const done = await waitForRun(run.id, ['failed']);
		// Its failed first step's own undo ran: rolled back, which fails a critical phase as a failure does.
		expect(done.counts).toMatchObject({ succeeded: 1, failed: 0, rolled_back: 1, skipped: 6 });
		expect(done.reason).toMatch(/failed in phase 0/);
		expect(done.tasks.filter((t) => t.phase === 1).every((t) => t.steps.length === 0)).toBe(true);
	});

	it('an SSE client that drops mid-run and resumes with Last-Event-ID gets every event exactly once', async () => {
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'stream me',
			nodeIds: fleet.nodeIds.slice(0, 10),
			params: { sleep_s: 0.1 },
			options: { concurrency: 3 }
		});
		const received: number[] = [];
		const readUntil = async (after: number | undefined, stop: (ids: number[]) => boolean) => {
			if (stop(received)) return;
			const abort = new AbortController();
			await readEventStream(eventStream({ after, runId: run.id, signal: abort.signal }), abort, (e) => {
				received.push(e.id);
				return stop(received);
			});
		};
		// First connection: from the run's start, dropped after 15 events, mid-run.
		await readUntil(0, (ids) => ids.length >= 15);
		expect((await getRun(run.id)).endedAt).toBeNull();
		// Reconnect with the last id seen, read until the run's end event arrives.
		// The run's end is committed before its event is written (batched a few ms later): wait for the event.
		const endedEvent = async () => {
			const rows = await db()
				.select({ id: events.id, data: events.data })
				.from(events)
				.where(and(eq(events.runId, run.id), eq(events.type, 'run.state')))
				.orderBy(asc(events.id));
			const last = rows.at(-1);
			return last?.data.ended ? last.id : undefined;
		};
		await waitForRun(run.id, ['succeeded']);
		const lastId = await waitFor('the run’s end event', endedEvent);
		await readUntil(received.at(-1), (ids) => ids.includes(lastId));
		const all = (
			await db().select({ id: events.id }).from(events).where(eq(events.runId, run.id)).orderBy(asc(events.id))
		).map((r) => r.id);
		expect(received).toEqual(all);
		expect(new Set(received).size).toBe(received.length);
	});

	it('a live SSE subscriber sees events as they happen, in id order', async () => {
		const abort = new AbortController();
		const stream = eventStream({ signal: abort.signal });
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'live',
			nodeIds: fleet.nodeIds.slice(0, 2)
		});
		const types: string[] = [];
		const ids: number[] = [];
		await readEventStream(stream, abort, (e) => {
			if (e.run_id !== run.id) return false;
			ids.push(e.id);
			types.push(e.data.state ? `${e.type}:${e.data.state}` : e.type);
			return types.includes('run.state:succeeded');
		});
		expect(types[0]).toBe('run.created');
		expect(types.filter((t) => t === 'task.state:succeeded')).toHaveLength(2);
		expect(types.filter((t) => t.startsWith('step.ended'))).toHaveLength(8);
		expect(ids).toEqual([...ids].sort((a, b) => a - b));
	});

	it('a stream filtered by ?types= sends only those types, live and from the backlog; an unknown type is a 400', async () => {
		const wanted = new Set(['run.state', 'task.state', 'task.output']);
		const from = eventBus.position;
		const liveAbort = new AbortController();
		const live = eventStream({ types: ['run.state', 'task.*'], signal: liveAbort.signal });
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'filtered',
			nodeIds: fleet.nodeIds.slice(0, 2)
		});
		const collect = async (stream: ReadableStream<Uint8Array>, abort: AbortController) => {
			const seen: string[] = [];
			await readEventStream(stream, abort, (e) => {
				expect(wanted.has(e.type)).toBe(true);
				if (e.run_id !== run.id) return false;
				seen.push(e.data.state ? `${e.type}:${e.data.state}` : e.type);
				return seen.includes('run.state:succeeded');
			});
			return seen;
		};
		const seenLive = await collect(live, liveAbort);
		expect(seenLive.filter((t) => t === 'task.state:succeeded')).toHaveLength(2);
		expect(seenLive.some((t) => t.startsWith('step.') || t === 'run.created')).toBe(false);

		// The same filter over the backlog (a client resuming from before the run) sees the same events.
		const backlogAbort = new AbortController();
		const backlog = eventStream({ after: from, types: ['run.state', 'task.*'], signal: backlogAbort.signal });
		expect(await collect(backlog, backlogAbort)).toEqual(seenLive);

		const refused = await getEventsEndpoint({
			request: new Request('http://console/api/events?types=run.state,task.bogus'),
			url: new URL('http://console/api/events?types=run.state,task.bogus')
		} as never);
		expect(refused.status).toBe(400);
		const body = await refused.json();
		expect(body.error.code).toBe('validation_failed');
		expect(body.error.fields.types).toMatch(/task\.bogus/);
		for (const bad of ['', ',', 'nope.*', 'run.state;drop']) {
			const url = new URL(`http://console/api/events?types=${encodeURIComponent(bad)}`);
			const res = await getEventsEndpoint({ request: new Request(url), url } as never);
			expect(res.status, bad).toBe(400);
		}
		const accepted = new AbortController();
		const okUrl = new URL('http://console/api/events?types=run.*,node.code');
		const ok = await getEventsEndpoint({
			request: new Request(okUrl, { signal: accepted.signal }),
			url: okUrl
		} as never);
		expect(ok.status).toBe(200);
		expect(ok.headers.get('content-type')).toMatch(/text\/event-stream/);
		accepted.abort();
		await ok.body?.cancel();
	});

	it('counts ended tasks by kind in /metrics, and leaves read-only checks out of the update metrics', async () => {
		const before = {
			sequenceOk: await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'succeeded' }),
			sequenceRolledBack: await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'rolled_back' }),
			sequenceCancelled: await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'cancelled' }),
			checkFailed: await metric('flotilla_tasks_total', { kind: 'check', outcome: 'failed' }),
			applied: await metric('update_apply_seconds_count'),
			rate: await metric('update_success_rate'),
			cancelledSteps: await metric('flotilla_step_duration_seconds_count', { step: 'step-2', outcome: 'cancelled' })
		};
		// Three update-like tasks: two succeed, one fails at step 2 and rolls back.
		const updates = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'metrics',
			nodeIds: fleet.nodeIds.slice(0, 3),
			params: { fail_at: 2, on: [fleet.hosts[0]!.name] }
		});
		await waitForRun(updates.id, ['failed']);
		expect(await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'succeeded' })).toBe(
			before.sequenceOk + 2
		);
		expect(await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'rolled_back' })).toBe(
			before.sequenceRolledBack + 1
		);
		expect(await metric('update_apply_seconds_count')).toBe(before.applied + 2);
		const rate = await metric('update_success_rate');
		expect(rate).toBeGreaterThan(0);
		expect(rate).toBeLessThan(100);

		// A check that cannot reach one node: a failed check task, and no change to the update metrics.
		const unreachable = fleet.hosts[3]!;
		await unreachable.setRefusing(true);
		try {
			const check = await createRun(systemActor, {
				kind: 'check',
				title: 'metrics check',
				nodeIds: fleet.nodeIds.slice(3, 5)
			});
			await waitForRun(check.id, ['failed']);
		} finally {
			await unreachable.setRefusing(false);
		}
		expect(await metric('flotilla_tasks_total', { kind: 'check', outcome: 'failed' })).toBe(before.checkFailed + 1);
		expect(await metric('update_success_rate')).toBe(rate);
		expect(await metric('update_apply_seconds_count')).toBe(before.applied + 2);

		// A cancel counts the queued tasks it stopped and the running ones it interrupted, and their steps as cancelled.
		const cancelled = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'metrics cancel',
			nodeIds: fleet.nodeIds.slice(5, 9),
			params: { hang_at: 2 },
			options: { concurrency: 2 }
		});
		await waitFor('two tasks hanging in step 2', async () => {
			const r = await getRun(cancelled.id);
			return r.tasks.filter((t) => t.currentStep === 'step-2').length === 2;
		});
		await cancelRun(systemActor, cancelled.id);
		await waitForRun(cancelled.id, ['cancelled']);
		expect(await metric('flotilla_tasks_total', { kind: 'test-sequence', outcome: 'cancelled' })).toBe(
			before.sequenceCancelled + 4
		);
		expect(await metric('flotilla_step_duration_seconds_count', { step: 'step-2', outcome: 'cancelled' })).toBe(
			before.cancelledSteps + 2
		);
		expect(await metric('update_success_rate')).toBe(rate);
		const text = await registry.metrics();
		expect(text).toMatch(/^flotilla_tasks_total\{kind="check",outcome="failed"\} \d+$/m);
		expect(text).toMatch(/^flotilla_queue_depth \d+$/m);
	});

	it('update_rollback_count rises by exactly the rolled-back tasks of flows that change nodes', async () => {
		const names = fleet.hosts.map((h) => h.name);
		const before = {
			rolledBack: await metric('update_rollback_count'),
			startedSequence: await metric('flotilla_rollbacks_total', { kind: 'test-sequence' }),
			startedNoUndo: await metric('flotilla_rollbacks_total', { kind: 'test-no-undo' })
		};
		const runs = await Promise.all([
			// Two tasks undo their completed steps and end rolled_back; the third succeeds.
			createRun(systemActor, {
				kind: 'test-sequence',
				title: 'two roll back',
				nodeIds: fleet.nodeIds.slice(0, 3),
				params: { fail_at: 2, on: names.slice(0, 2) }
			}),
			// A rollback that fails: started, but the task ends failed and needing attention, not rolled back.
			createRun(systemActor, {
				kind: 'test-sequence',
				title: 'undo fails',
				nodeIds: fleet.nodeIds.slice(3, 4),
				params: { fail_at: 3, undo_fails_at: 2 }
			}),
			// Two tasks fail with nothing to undo: failed, not rolled back.
			createRun(systemActor, {
				kind: 'test-no-undo',
				title: 'nothing to undo',
				nodeIds: fleet.nodeIds.slice(4, 7),
				params: { on: names.slice(4, 6) }
			}),
			// A read-only flow's failed task is no update either.
			createRun(systemActor, {
				kind: 'test-look-fails',
				title: 'read-only',
				nodeIds: fleet.nodeIds.slice(7, 8),
				params: { on: names.slice(7, 8) }
			})
		]);
		const [undone, failedUndo, nothingToUndo, readOnly] = await Promise.all(
			runs.map((r) => waitForRun(r.id, ['succeeded', 'failed']))
		);
		expect(undone!.counts).toMatchObject({ rolled_back: 2, succeeded: 1 });
		expect(failedUndo!.tasks[0]).toMatchObject({ state: 'failed', needsAttention: true });
		expect(nothingToUndo!.counts).toMatchObject({ failed: 2, rolled_back: 0, succeeded: 1 });
		expect(nothingToUndo!.tasks.flatMap((t) => t.steps).every((s) => s.phase === 'do')).toBe(true);
		expect(readOnly!.counts).toMatchObject({ failed: 1, rolled_back: 0 });

		// Only the two whose undos ran: a failure nothing undid is no rollback.
		expect(await metric('update_rollback_count')).toBe(before.rolledBack + 2);
		// flotilla_rollbacks_total keeps counting rollbacks started: the failed one too, and none where nothing was undone.
		expect(await metric('flotilla_rollbacks_total', { kind: 'test-sequence' })).toBe(before.startedSequence + 3);
		expect(await metric('flotilla_rollbacks_total', { kind: 'test-no-undo' })).toBe(before.startedNoUndo);
	});

	it('a task whose lease ran out while this instance still runs it is not recovered alongside itself', async () => {
		// A renewal that comes late (a database busy with hundreds of tasks) lets a lease run out; the sweep
		// must not take the task over from the very instance executing it, which would run it twice at once.
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'late renewal',
			nodeIds: fleet.nodeIds.slice(0, 1),
			params: { sleep_s: 1 }
		});
		const [task] = await waitFor('the task running step 2', async () => {
			const r = await getRun(run.id);
			return r.tasks[0]?.currentStep === 'step-2' && r.tasks;
		});
		await db()
			.update(tasks)
			.set({ leaseExpiresAt: new Date(Date.now() - 1_000) })
			.where(eq(tasks.id, task!.id));
		await sweepRuns();
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('succeeded');
		expect(done.tasks[0]!.attempt).toBe(1);
		expect(done.tasks[0]!.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'do:step-1:succeeded',
			'do:step-2:succeeded',
			'do:step-3:succeeded',
			'do:step-4:succeeded'
		]);
	});

	it('a dispatch whose jobs cannot be added is undone: no task is left dispatched without a job, and the next one sends it', async () => {
		// pg-boss refuses this queue's jobs, as when the insert fails or the console dies before the commit: the
		// tasks must not be left dispatched with no job, holding the run until the stale-dispatch reset.
		const queue = 'flotilla-test-sequence';
		const [row] = await queryRows<{ table: string }>(
			sql`select table_name as table from pgboss.queue where name = ${queue}`
		);
		const jobTable = sql.raw(`pgboss.${row!.table}`);
		await db().execute(
			sql.raw(`create or replace function test_refuse_jobs() returns trigger language plpgsql as $$
				begin raise exception 'refused by the test'; end $$`)
		);
		await db().execute(
			sql`create trigger test_refuse_jobs before insert on ${jobTable} for each row
				when (new.name = ${sql.raw(`'${queue}'`)}) execute function test_refuse_jobs()`
		);
		let run: Awaited<ReturnType<typeof createRun>>;
		try {
			run = await createRun(systemActor, {
				kind: 'test-sequence',
				title: 'refused jobs',
				nodeIds: fleet.nodeIds.slice(0, 3)
			});
			await sweepRuns();
			const refused = await db().select().from(tasks).where(eq(tasks.runId, run.id));
			expect(refused.map((t) => [t.state, t.dispatchedAt, t.jobId])).toEqual(Array(3).fill(['queued', null, null]));
			expect((await getRun(run.id)).state).toBe('queued');
		} finally {
			await db().execute(sql`drop trigger if exists test_refuse_jobs on ${jobTable}`);
		}
		// The sweep dispatches it again; each task runs once.
		const done = await waitForRun(run.id, ['succeeded', 'failed']);
		expect(done.state).toBe('succeeded');
		expect(done.tasks.map((t) => t.attempt)).toEqual([1, 1, 1]);
	});
});
