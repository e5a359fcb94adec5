import { randomBytes, randomUUID } from 'node:crypto';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { auditLog, nodes } from '../../src/lib/server/db/schema';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { checkFlow } from '../../src/lib/server/fleet/check-flow';
import { createRun } from '../../src/lib/server/engine/runs';
import { registerFleet } from '../../src/lib/server/fleet/register';
import { checkNodeFor } from '../../src/lib/server/fleet/checks';
import { getNode } from '../../src/lib/server/fleet/nodes';
import { sshTargetFor } from '../../src/lib/server/fleet/targets';
import { connect } from '../../src/lib/server/ssh/connection';
import { SshError } from '../../src/lib/server/ssh/errors';
import { backends } from '../support/databases';
import { waitForRun } from '../support/engine';
import { startSimFleet, type SimFleet } from '../support/sim-fleet';

registerFleet();

/**
 * "Check all nodes" (the engine's `check` flow) and the single-node check (`checkNode`) must leave the same
 * record on a node, whatever they find: each test checks the same nodes both ways, from the same starting rows.
 */
describe.each(backends)('checking nodes on $name', ({ open }) => {
	let handle: DatabaseHandle;
	let fleet: SimFleet;
	/** Node ids: one that answers, one that refuses connections, one whose host key changed, and one that was
	 * flagged with a changed key before and now presents its pinned key again. */
	let ok: string, down: string, rekeyed: string, flagged: string;
	let pinnedKey: string, freshKey: string;

	beforeAll(async () => {
		handle = await open();
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		fleet = await startSimFleet(4, 'chk');
		[ok, down, rekeyed, flagged] = fleet.nodeIds as [string, string, string, string];
		await fleet.hosts[1]!.setRefusing(true);
		pinnedKey = fleet.hosts[2]!.hostKeyFingerprint;
		freshKey = fleet.hosts[2]!.changeHostKey();
		await startEngine({ concurrency: 10, leaseMs: 5_000, sweepMs: 1_000 });
	}, 60_000);
	afterAll(async () => {
		await stopEngine();
		await fleet?.stop();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	/** Every node as never checked, the flagged one as an earlier check left it. */
	async function reset() {
		await db().update(nodes).set({
			hostKeyStatus: 'pinned',
			presentedFingerprint: null,
			reachable: null,
			lastError: null,
			lastSeenAt: null,
			lastCheckAt: null,
			latencyMs: null,
			uname: null
		});
		await db()
			.update(nodes)
			.set({ hostKeyStatus: 'changed', presentedFingerprint: 'SHA256:seen-once', reachable: true, lastError: 'old' })
			.where(eq(nodes.id, flagged));
	}

	/** What a check records, with times and the measured latency reduced to whether they are there. */
	async function recorded(ids: string[]) {
		const rows = await db().select().from(nodes).where(inArray(nodes.id, ids)).orderBy(asc(nodes.name));
		return rows.map((n) => ({
			name: n.name,
			reachable: n.reachable,
			hostKeyStatus: n.hostKeyStatus,
			hostKeyFingerprint: n.hostKeyFingerprint,
			presentedFingerprint: n.presentedFingerprint,
			lastError: n.lastError,
			uname: n.uname,
			latencyMs: n.latencyMs === null ? null : 'measured',
			lastSeenAt: n.lastSeenAt ? 'set' : null,
			lastCheckAt: n.lastCheckAt ? 'set' : null
		}));
	}

	async function checkedOneByOne(ids: string[]) {
		await reset();
		for (const id of ids) await checkNodeFor(systemActor, id);
		return recorded(ids);
	}

	async function hostKeyAudits() {
		const rows = await db()
			.select()
			.from(auditLog)
			.where(and(eq(auditLog.action, 'node.host_key_changed'), eq(auditLog.targetId, rekeyed)))
			.orderBy(asc(auditLog.id));
		return rows.map((r) => ({ actor: r.actorName, result: r.result, details: r.details }));
	}

	it('a check run records reachable nodes as the single-node check does, a key flagged earlier included', async () => {
		await reset();
		const run = await createRun(systemActor, { kind: 'check', title: 'reachable', nodeIds: [ok, flagged] });
		expect((await waitForRun(run.id, ['succeeded', 'failed'])).state).toBe('succeeded');
		const byRun = await recorded([ok, flagged]);
		expect(byRun[0]).toMatchObject({
			reachable: true,
			hostKeyStatus: 'pinned',
			lastError: null,
			latencyMs: 'measured'
		});
		expect(byRun[0]!.uname).toBeTruthy();
		// It presented its pinned key: no longer flagged.
		expect(byRun[1]).toMatchObject({ hostKeyStatus: 'pinned', presentedFingerprint: null, lastError: null });
		expect(byRun).toEqual(await checkedOneByOne([ok, flagged]));
	});

	it('the check flow records a refused session from the SSH layer’s error as the single-node check does', async () => {
		await reset();
		const runId = randomUUID();
		for (const id of [down, rekeyed]) {
			const node = await getNode(id);
			// What the engine's runner meets when it connects for the task, before any step.
			const connectError = await connect(await sshTargetFor(node), { readyTimeoutMs: 15_000 }).then(
				(conn) => {
					conn.close();
					throw new Error(`${node.name} should have refused the session`);
				},
				(err: unknown) => err as SshError
			);
			expect(connectError).toBeInstanceOf(SshError);
			await checkFlow.finished!({
				task: { id: randomUUID(), runId },
				node,
				params: {},
				memo: {},
				state: 'failed',
				error: `Cannot reach the node: ${connectError.message}`,
				connectError
			});
		}
		const byRun = await recorded([down, rekeyed]);
		expect(byRun[0]).toMatchObject({ reachable: false, lastCheckAt: 'set', lastSeenAt: null });
		expect(byRun[0]!.lastError).toMatch(/unreachable/);
		expect(byRun[1]).toMatchObject({
			reachable: true,
			hostKeyStatus: 'changed',
			hostKeyFingerprint: pinnedKey,
			presentedFingerprint: freshKey,
			// It answered with a key the console does not trust: no session, so not "last connected" now.
			lastSeenAt: null
		});
		const [flowAudit] = await hostKeyAudits();
		expect(flowAudit).toMatchObject({ actor: 'system', result: 'denied', details: { run_id: runId } });

		expect(byRun).toEqual(await checkedOneByOne([down, rekeyed]));
		const [, singleAudit] = await hostKeyAudits();
		const { run_id: _, ...flowDetails } = flowAudit!.details;
		expect(flowDetails).toEqual(singleAudit!.details);
	});

	// The runner hands the connection's SshError to the flow's `finished` hook (TaskEnd.connectError): without
	// it the hook could not tell an unreachable node from a changed host key.
	it('a check run records unreachable nodes and changed host keys as the single-node check does', async () => {
		await reset();
		const run = await createRun(systemActor, { kind: 'check', title: 'refused', nodeIds: [down, rekeyed] });
		expect((await waitForRun(run.id, ['succeeded', 'failed'])).counts).toMatchObject({ failed: 2 });
		const byRun = await recorded([down, rekeyed]);
		expect(byRun[1]).toMatchObject({ hostKeyStatus: 'changed', presentedFingerprint: freshKey });
		expect((await hostKeyAudits()).at(-1)).toMatchObject({ details: { run_id: run.id } });
		expect(byRun).toEqual(await checkedOneByOne([down, rekeyed]));
	});
});
