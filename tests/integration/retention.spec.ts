import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { db, rowsOf, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { pruneOldRecords } from '../../src/lib/server/retention';
import { backends } from '../support/databases';

const count = async (query: ReturnType<typeof sql>) =>
	Number(rowsOf<{ n: string | number }>(await db().execute(query))[0]!.n);

describe.each(backends)('retention on $name', ({ open }) => {
	let handle: DatabaseHandle;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
	});

	afterAll(async () => {
		useDatabase(undefined);
		await handle.close();
	});

	it('prunes old events, task steps and audit rows in batches; recent ones, runs and tasks stay', async () => {
		const [cred] = rowsOf<{ id: string }>(
			await db().execute(sql`
				insert into credentials (id, name, key_type, public_key, fingerprint, sealed_private_key)
				values (gen_random_uuid(), 'k', 'ssh-ed25519', 'pub', 'fp', 'sealed') returning id`)
		);
		const [node] = rowsOf<{ id: string }>(
			await db().execute(
				sql`insert into nodes (name, host, credential_id) values ('n1', 'h', ${cred!.id}) returning id`
			)
		);
		// An old run (120 days) and a recent one (a day), each with a task and its steps.
		const runIds: string[] = [];
		for (const [title, days] of [
			['old', 120],
			['recent', 1]
		] as const) {
			const [run] = rowsOf<{ id: string }>(
				await db().execute(sql`
					insert into runs (kind, title, state, created_by, options, created_at, started_at, ended_at)
					values ('check', ${title}, 'succeeded', 'system', '{}'::jsonb, now() - make_interval(days => ${days}),
						now() - make_interval(days => ${days}), now() - make_interval(days => ${days}))
					returning id`)
			);
			runIds.push(run!.id);
			const [task] = rowsOf<{ id: string }>(
				await db().execute(sql`
					insert into tasks (run_id, node_id, node_name, seq, state, started_at, ended_at)
					values (${run!.id}, ${node!.id}, 'n1', 0, 'succeeded', now() - make_interval(days => ${days}), now() - make_interval(days => ${days}))
					returning id`)
			);
			await db().execute(sql`
				insert into task_steps (task_id, name, phase, attempt, state, started_at)
				select ${task!.id}, 'step-' || i, 'do', 1, 'succeeded', now() - make_interval(days => ${days})
				from generate_series(1, 7) as i`);
			await db().execute(sql`
				insert into events (type, run_id, task_id, node_id, at)
				select 'task.state', ${run!.id}, ${task!.id}, ${node!.id}, now() - make_interval(days => ${days})
				from generate_series(1, 11) as i`);
		}
		// Audit rows: 400 days old (past the audit age), 200 days (past the events' age, within the audit's), today.
		for (const days of [400, 400, 400, 200, 0]) {
			await db().execute(sql`
				insert into audit_log (at, actor_name, via, action, result)
				values (now() - make_interval(days => ${days}), 'system', 'system', 'test', 'ok')`);
		}

		const pruned = await pruneOldRecords({ days: 90, auditDays: 365, batchSize: 3 });
		expect(pruned).toEqual({ events: 11, task_steps: 7, audit_log: 3 });

		expect(await count(sql`select count(*) as n from events where at < now() - interval '90 days'`)).toBe(0);
		expect(await count(sql`select count(*) as n from events`)).toBe(11);
		expect(await count(sql`select count(*) as n from task_steps`)).toBe(7);
		expect(await count(sql`select count(*) as n from audit_log`)).toBe(2);
		// Both runs, old and recent, and their tasks stay: a run's summary outlives its detail.
		expect(await count(sql`select count(*) as n from runs`)).toBe(2);
		expect(await count(sql`select count(*) as n from tasks`)).toBe(2);

		// Nothing left to prune: a second pass deletes nothing; 0 days keeps everything.
		expect(await pruneOldRecords({ days: 90, auditDays: 365 })).toEqual({ events: 0, task_steps: 0, audit_log: 0 });
		expect(await pruneOldRecords({ days: 0, auditDays: 0 })).toEqual({ events: 0, task_steps: 0, audit_log: 0 });
		expect(await count(sql`select count(*) as n from audit_log`)).toBe(2);
		// Everything old: the whole table goes.
		expect(await pruneOldRecords({ days: 90, auditDays: 1, batchSize: 1 })).toEqual({
			events: 0,
			task_steps: 0,
			audit_log: 1
		});
	});
});
