import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { buildPlan } from '../../src/lib/server/codesync/plan';
import { createRole, getRole } from '../../src/lib/server/codesync/roles';
import { versionsFor } from '../../src/lib/server/codesync/status';
import { countByStatus } from '../../src/lib/server/fleet/status';
import { recordFailed, recordSynced } from '../../src/lib/server/codesync/versions';
import { failedRunsOf, nodesBehind, roleFailures, roleSummaries } from '../../src/lib/server/codesync/views';
import { registerDomains } from '../../src/lib/server/domains';
import { recentTasksOf, taskOutput } from '../../src/lib/server/engine';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { events, nodeCodeVersions, nodes, runs, tasks } from '../../src/lib/server/db/schema';
import { drainEvents } from '../../src/lib/server/engine/events';
import { listNodes } from '../../src/lib/server/fleet/nodes';
import { planView } from '../../src/lib/server/codesync/update-forms';
import { newHostKey } from '../../src/lib/server/sim/server';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { backends, freshPostgres } from '../support/databases';

/** The read views behind the Fleet Overview, the node page and the Code Sync page, on both back-ends. */

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

async function fleet(
	count: number,
	roles: string[],
	extra: (i: number) => Partial<typeof nodes.$inferInsert> = () => ({})
) {
	const cred = await createCredential(systemActor, { name: `k-${Date.now()}`, privateKey: newHostKey() });
	const ids: string[] = [];
	for (let i = 0; i < count; i += 1000) {
		const rows = await db()
			.insert(nodes)
			.values(
				Array.from({ length: Math.min(1000, count - i) }, (_, j) => ({
					name: `n-${String(i + j + 1).padStart(5, '0')}`,
					host: '127.0.0.1',
					port: 22,
					credentialId: cred.id,
					roles,
					hostKeyStatus: 'pinned' as const,
					hostKeyFingerprint: 'SHA256:x',
					...extra(i + j)
				}))
			)
			.returning({ id: nodes.id });
		ids.push(...rows.map((r) => r.id));
	}
	return ids;
}

const role = (name: string, order: number) =>
	createRole(systemActor, createRoleSchema.parse({ name, path: `/opt/${name}`, units: [`${name}.service`], order }));

registerDomains();
beforeAll(() => useMasterKey(randomBytes(32)));
afterAll(() => useMasterKey(undefined));

describe.each(backends)('Code Sync views on $name', ({ open }) => {
	let handle: DatabaseHandle;
	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
	});
	afterAll(async () => {
		await drainEvents();
		useDatabase(undefined);
		await handle.close();
	});

	it('summarises each role, lists failures with their run, and pages the nodes behind by name', async () => {
		await role('web', 10);
		await role('db', 20);
		const [n1, n2, n3, n4] = await fleet(4, ['web', 'db']);
		await db()
			.update(nodes)
			.set({ roles: ['web'] })
			.where(eq(nodes.id, n4!));
		await notifyCommit(systemActor, { commit: A, changed_roles: ['web', 'db'] });
		const [run] = await db()
			.insert(runs)
			.values({ kind: 'code-sync', title: 'Update All', createdBy: 'test', options: { concurrency: 5 } })
			.returning();
		// n1 runs both latest; n2 runs web only; n3 failed to move db; n4 (web only) is up to date.
		for (const id of [n1!, n2!, n3!, n4!]) await recordSynced(id, 'web', A, null);
		await recordSynced(n1!, 'db', A, null);
		await recordSynced(n3!, 'db', C, null);
		await recordFailed(n3!, 'db', A, 'Rolled back: verify: db is unhealthy', run!.id);

		const summaries = await roleSummaries(['web', 'db']);
		expect(summaries.get('web')).toMatchObject({ nodes: 4, behind: 0, failed: 0 });
		expect(summaries.get('db')).toMatchObject({ nodes: 3, behind: 2, failed: 1 });
		expect(summaries.get('db')!.lastSyncedAt).toBeInstanceOf(Date);
		expect(Date.now() - summaries.get('db')!.lastSyncedAt!.getTime()).toBeLessThan(60_000);

		expect(await roleFailures('db')).toEqual([
			expect.objectContaining({
				nodeId: n3,
				nodeName: 'n-00003',
				failedCommit: A,
				error: 'Rolled back: verify: db is unhealthy',
				runId: run!.id,
				runNumber: run!.number
			})
		]);
		expect(await roleFailures('web')).toEqual([]);
		expect(await failedRunsOf(n3!)).toEqual(new Map([['db', { id: run!.id, number: run!.number }]]));

		const first = await nodesBehind(1);
		expect(first.total).toBe(2);
		expect(first.items.map((n) => [n.name, n.roles.map((v) => `${v.role}:${v.commit}←${v.latest}`)])).toEqual([
			['n-00002', [`db:null←${A}`]]
		]);
		const second = await nodesBehind(1, first.nextCursor!);
		expect(second.items.map((n) => n.name)).toEqual(['n-00003']);
		expect(second.nextCursor).toBeNull();

		// A newer commit for web puts everyone with web behind it.
		await notifyCommit(systemActor, { commit: B, changed_roles: ['web'] });
		expect((await roleSummaries(['web'])).get('web')).toMatchObject({ nodes: 4, behind: 4 });
		expect((await nodesBehind(10)).total).toBe(4);
	});

	it('a role following tags takes the highest version notified, not the newest; a later tag of a known commit counts', async () => {
		await createRole(
			systemActor,
			createRoleSchema.parse({ name: 'tagged', path: '/opt/tagged', units: ['tagged.service'], follow_tags: 'v*' })
		);
		const commit = (n: number) => String(n).repeat(40).slice(0, 40);
		const latest = async () => (await getRole('tagged')).latestCommit;
		const notify = (n: number, tag?: string) =>
			notifyCommit(systemActor, { commit: commit(n), changed_roles: ['tagged'], ...(tag ? { tag } : {}) });

		expect((await notify(1)).roles[0]).toMatchObject({
			new_commit: false,
			reason: expect.stringMatching(/names no tag/)
		});
		expect(await latest()).toBeNull();
		expect((await notify(2, 'v1.9.3')).roles[0]).toMatchObject({ new_commit: true });
		expect((await notify(3, 'v1.10.0')).roles[0]).toMatchObject({ new_commit: true });
		expect((await notify(4, 'v1.9.4')).roles[0]).toMatchObject({
			new_commit: false,
			reason: 'the role follows tags v*; v1.9.4 is not above its latest, v1.10.0'
		});
		expect((await notify(5, 'nightly')).roles[0]).toMatchObject({ new_commit: false });
		expect(await latest()).toBe(commit(3));
		// The untagged commit of the start is tagged later: it now names the highest version.
		expect((await notify(1, 'v2.0.0')).roles[0]).toMatchObject({ new_commit: true });
		expect(await latest()).toBe(commit(1));
		// A release candidate ranks below its release.
		expect((await notify(6, 'v2.0.0-rc.1')).roles[0]).toMatchObject({ new_commit: false });
		expect(await latest()).toBe(commit(1));

		// A role that follows its branch is untouched by tags: the newest notified commit is its latest, and a
		// known commit notified again (now with a tag) does not move it back.
		await role('plain', 30);
		await notifyCommit(systemActor, { commit: commit(7), changed_roles: ['plain'] });
		await notifyCommit(systemActor, { commit: commit(8), changed_roles: ['plain'], tag: 'v0.1.0' });
		expect(
			(await notifyCommit(systemActor, { commit: commit(7), changed_roles: ['plain'], tag: 'v9.0.0' })).roles[0]
		).toMatchObject({
			new_commit: false
		});
		expect((await getRole('plain')).latestCommit).toBe(commit(8));
	});

	it('lists a node’s tasks newest run first, and a task’s output up to an event id', async () => {
		const [node] = await fleet(1, [], () => ({ name: 'tasks-node' }));
		const made = [];
		for (const title of ['first', 'second']) {
			const [run] = await db()
				.insert(runs)
				.values({ kind: 'check', title, createdBy: 'test', options: { concurrency: 1 } })
				.returning();
			const [task] = await db()
				.insert(tasks)
				.values({ runId: run!.id, nodeId: node!, nodeName: 'tasks-node', seq: 0, state: 'succeeded' })
				.returning();
			made.push({ run: run!, task: task! });
		}
		const listed = await recentTasksOf(node!);
		expect(listed.map((t) => t.runTitle)).toEqual(['second', 'first']);
		expect(listed[0]).toMatchObject({ id: made[1]!.task.id, runNumber: made[1]!.run.number, state: 'succeeded' });

		const { run, task } = made[1]!;
		const out = (lines: string[], step: string) => ({
			type: 'task.output',
			runId: run.id,
			taskId: task.id,
			nodeId: node!,
			data: { step, lines: lines.map((t) => ({ s: 'out', t })) }
		});
		const rows = await db()
			.insert(events)
			.values([out(['one', 'two'], 'fetch'), out(['three'], 'verify'), out(['later'], 'verify')])
			.returning({ id: events.id });
		const upTo = rows[1]!.id;
		expect(await taskOutput(run.id, task.id, upTo)).toEqual({
			lines: [
				{ s: 'out', t: 'one', step: 'fetch' },
				{ s: 'out', t: 'two', step: 'fetch' },
				{ s: 'out', t: 'three', step: 'verify' }
			],
			truncated: false
		});
		// Only the last lines of a long output, said to be cut.
		expect(await taskOutput(run.id, task.id, rows[2]!.id, 2)).toEqual({
			lines: [
				{ s: 'out', t: 'three', step: 'verify' },
				{ s: 'out', t: 'later', step: 'verify' }
			],
			truncated: true
		});
	});
});

describe('the Fleet Overview’s queries on 10,000 nodes (PostgreSQL)', () => {
	let handle: Awaited<ReturnType<typeof freshPostgres>>;
	beforeAll(async () => {
		handle = await freshPostgres('flotilla_views');
		useDatabase(handle);
	});
	afterEach(() => drainEvents());
	afterAll(async () => {
		useDatabase(undefined);
		await handle?.close();
	});

	it('pages, counts and plans a fleet of 10,000 in the database, and the plan the page gets is cut to size', async () => {
		await role('app', 10);
		const ids = await fleet(10_000, ['app'], (i) => ({ controlPlane: i < 3, labels: { rack: `r${i % 20}` } }));
		await notifyCommit(systemActor, { commit: A, changed_roles: ['app'] });
		// A third of the fleet already runs it (written in bulk: recordSynced one by one only costs the test time).
		const synced = ids.filter((_, i) => i % 3 === 0);
		for (let i = 0; i < synced.length; i += 1000) {
			await db()
				.insert(nodeCodeVersions)
				.values(synced.slice(i, i + 1000).map((nodeId) => ({ nodeId, role: 'app', commit: A, syncedAt: new Date() })));
		}

		const timed = async <T>(what: string, f: () => Promise<T>) => {
			const t0 = performance.now();
			const out = await f();
			console.log(`${what}: ${Math.round(performance.now() - t0)} ms`);
			return out;
		};
		const counts = await timed('countByStatus', () => countByStatus());
		expect(counts).toMatchObject({ UP_TO_DATE: 3334, OUTDATED: 6666 });
		const page = await timed('listNodes page 1 (status OUTDATED)', () => listNodes({ status: 'OUTDATED', limit: 100 }));
		expect(page.items).toHaveLength(100);
		expect(page.items.every((n) => n.status === 'OUTDATED')).toBe(true);
		const later = await timed('listNodes page 2 by cursor, label filter', () =>
			listNodes({ status: 'OUTDATED', label: 'rack=r7', limit: 100, cursor: page.nextCursor! })
		);
		expect(later.items.every((n) => n.name > page.nextCursor! && n.labels.rack === 'r7')).toBe(true);
		await timed('versionsFor a page', () => versionsFor(page.items));
		const behind = await timed('nodesBehind', () => nodesBehind(100));
		expect(behind.total).toBe(6666);
		await timed('roleSummaries', () => roleSummaries(['app']));

		const plan = await timed('buildPlan (Update All dry run)', () => buildPlan({}));
		expect(plan.nodes).toHaveLength(6666);
		const view = planView(plan);
		expect(view).toMatchObject({ nodesTotal: 6666, upToDate: 3334, excludedTotal: 0 });
		expect(view.nodes).toHaveLength(200);
		expect(view.phases.map((p) => `${p.label}:${p.nodes}:${p.critical}`)).toEqual([
			'Control plane first:2:true',
			'Fleet:6664:false'
		]);
		// The confirmation pins the whole plan's targets, whatever was cut from the rows.
		expect(view.targets).toEqual({ app: A });
		expect(JSON.stringify(view).length).toBeLessThan(100_000);
	}, 300_000);
});
