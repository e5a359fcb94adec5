import { eq, inArray, sql } from 'drizzle-orm';
import { db, jsonParam, rowsOf, type Transaction } from '$lib/server/db';
import {
	credentials,
	nodes,
	runs,
	tasks,
	type Credential,
	type Node,
	type Run,
	type Task
} from '$lib/server/db/schema';
import { GroupCommit } from './group-commit';
import { instanceId, settings } from './runtime';

export type Claim =
	| {
			kind: 'claimed';
			task: Task;
			run: Run | undefined;
			/** Read with the claim when it could be; otherwise the runner reads it. */
			node?: Node;
			credential?: Credential;
			recovering: boolean;
	  }
	| { kind: 'done' }
	| { kind: 'retry_later'; why: string };

/**
 * Takes a task for this instance: a queued one, or a running one whose owner stopped renewing its lease
 * (it crashed). The caller has already ruled out a task this instance is executing itself. The claims of
 * all the tasks that start together are made in one transaction; a task that batch did not take (a paused
 * or cancelled run, a lease still held, a node busy with another run's task) is looked at on its own.
 */
export function claimTask(taskId: string): Promise<Claim> {
	return claims.add(taskId);
}

const claims = new GroupCommit<string, Claim>(async (ids) => {
	let taken = new Map<string, Claim>();
	try {
		taken = await claimBatch([...new Set(ids)]);
	} catch (err) {
		// One node running another run's task refuses the whole batch: take them one by one instead.
		if (!isUniqueViolation(err)) throw err;
	}
	// The runner asks once per task at a time, but a batch never hands one task out twice, whoever asks.
	const asked = new Set<string>();
	return Promise.all(
		ids.map((id): Claim | Promise<Claim> => {
			if (asked.has(id)) return { kind: 'retry_later', why: 'asked for twice at once' };
			asked.add(id);
			return taken.get(id) ?? claimOne(id);
		})
	);
});

/** The common case in one transaction: claim every startable task of the batch, read their runs, nodes and credentials. */
async function claimBatch(ids: string[]): Promise<Map<string, Claim>> {
	const batch = jsonParam(ids.map((id) => ({ id })));
	const lease = `${settings().leaseMs} milliseconds`;
	return db().transaction(async (tx) => {
		const claimed = rowsOf<{ id: string; previous: string }>(
			await tx.execute(sql`
				with v as (select * from jsonb_to_recordset(${batch}::jsonb) as v(id uuid)),
				old as (
					select t.id, t.state from tasks t join v on v.id = t.id join runs r on r.id = t.run_id
					where (t.state = 'queued' and r.state not in ('paused', 'cancelled'))
						or (t.state = 'running' and t.lease_expires_at <= now())
					-- In id order: two consoles' claims locking the same tasks in two orders could deadlock.
					order by t.id
					for update of t
				)
				update tasks set state = 'running', lease_owner = ${instanceId},
					lease_expires_at = now() + ${lease}::interval, attempt = tasks.attempt + 1, error = null
				from old where tasks.id = old.id
				returning tasks.id, old.state as previous`)
		);
		const out = new Map<string, Claim>();
		if (!claimed.length) return out;
		const taskRows = await stampStarted(
			tx,
			claimed.map((c) => c.id)
		);
		const runRows = await tx
			.select()
			.from(runs)
			.where(inArray(runs.id, [...new Set(taskRows.map((t) => t.runId))]));
		const nodeRows = await tx
			.select({ node: nodes, credential: credentials })
			.from(nodes)
			.leftJoin(credentials, eq(credentials.id, nodes.credentialId))
			.where(inArray(nodes.id, [...new Set(taskRows.map((t) => t.nodeId))]));
		const runOf = new Map(runRows.map((r) => [r.id, r]));
		const nodeOf = new Map(nodeRows.map((n) => [n.node.id, n]));
		const previous = new Map(claimed.map((c) => [c.id, c.previous]));
		for (const task of taskRows) {
			const n = nodeOf.get(task.nodeId);
			out.set(task.id, {
				kind: 'claimed',
				task,
				run: runOf.get(task.runId),
				node: n?.node,
				credential: n?.credential ?? undefined,
				recovering: previous.get(task.id) === 'running'
			});
		}
		return out;
	});
}

/** One task, with every reason it may not be startable spelled out. */
async function claimOne(taskId: string): Promise<Claim> {
	try {
		return await db().transaction(async (tx) => {
			const [task] = await tx.select().from(tasks).where(eq(tasks.id, taskId)).for('update');
			if (!task || (task.state !== 'queued' && task.state !== 'running')) return { kind: 'done' };
			// Read whole: the task needs its run's kind and parameters, and this saves reading it again.
			const [run] = await tx.select().from(runs).where(eq(runs.id, task.runId));
			if (task.state === 'running' && task.leaseExpiresAt && task.leaseExpiresAt.getTime() > Date.now()) {
				return { kind: 'retry_later', why: `held by ${task.leaseOwner}` };
			}
			if (task.state === 'queued' && run?.state === 'paused') {
				// Paused after this job was sent: give the slot back; resume dispatches the task again.
				await tx.update(tasks).set({ dispatchedAt: null, jobId: null }).where(eq(tasks.id, taskId));
				return { kind: 'done' };
			}
			if (task.state === 'queued' && run?.state === 'cancelled') return { kind: 'done' };
			await tx
				.update(tasks)
				.set({
					state: 'running',
					leaseOwner: instanceId,
					leaseExpiresAt: sql`now() + ${`${settings().leaseMs} milliseconds`}::interval`,
					attempt: task.attempt + 1,
					error: null
				})
				.where(eq(tasks.id, taskId));
			const [claimed] = await stampStarted(tx, [taskId]);
			return { kind: 'claimed', task: claimed!, run, recovering: task.state === 'running' };
		});
	} catch (err) {
		if (isUniqueViolation(err)) return { kind: 'retry_later', why: 'the node is running another task' };
		throw err;
	}
}

/**
 * Records when claimed tasks started (their first attempt's start stays) and reads them back. Stamped by a
 * statement of its own, after the claim's: a task's claim may wait, on the one-running-task-per-node index,
 * for the end of the node's previous task to commit, and `now()` (the transaction's start) or a clock read
 * before that wait could date this task's start before the previous one's end. Being the row's second write in
 * the transaction, it checks the task's foreign key, a key-share lock on the run: why the engine's run locks
 * are FOR NO KEY UPDATE (docs/development.md, "Dispatch").
 */
async function stampStarted(tx: Transaction, ids: string[]): Promise<Task[]> {
	return tx
		.update(tasks)
		.set({ startedAt: sql`coalesce(${tasks.startedAt}, clock_timestamp())` })
		.where(inArray(tasks.id, ids))
		.returning();
}

function isUniqueViolation(err: unknown): boolean {
	for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
		if (e.code === '23505') return true;
	}
	return false;
}
