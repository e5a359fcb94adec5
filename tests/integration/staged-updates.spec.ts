import { randomBytes } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { sysStagedUpdates, type Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { statusOf } from '../../src/lib/server/fleet/status';
import { startScan, startUpdate } from '../../src/lib/server/sysupdates/runs';
import { driveStagedUpdates, listStagedUpdates, startStagedUpdate } from '../../src/lib/server/sysupdates/staged';
import { freshPglite } from '../support/databases';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Staged patching with a soak, on 4 real sshd hosts (127.0.1.90–93): hosts 0 and 1 carry env=staging, 2 and 3
 * env=prod. Time is driven through the check's `now`, never waited for: the soak is 24 hours. Each test's hosts
 * are scanned first: a staged update is pinned to the plan of that scan (what the operator reviewed).
 */

let bed: Testbed;
let handle: DatabaseHandle;
let list: Node[];
const host = (i: number) => bed.hosts[i] as TestHost;
const HOUR = 3_600_000;
const REQUEST = { force_full: false, reboot: 'never' as const };

const stagedRow = async (id: string) =>
	(await db().select().from(sysStagedUpdates).where(eq(sysStagedUpdates.id, id)))[0]!;
const installed = async (i: number) => (await bed.packages(host(i)))[0]!.installed;
const aptRan = async (i: number, since: number) =>
	(await bed.commandLog(host(i))).slice(since).filter((l) => l.includes(' apt-get ') && l.includes('install'));

beforeAll(async () => {
	bed = await startTestbed({ hosts: 4, firstHost: 90 });
	handle = await freshPglite();
	useDatabase(handle);
	useMasterKey(randomBytes(32));
	registerDomains();
	list = await registerTestbedNodes(bed, (_, i) => ({
		roles: ['web'],
		policy: 'full',
		labels: { env: i < 2 ? 'staging' : 'prod' }
	}));
	await startEngine({ concurrency: 20, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await handle?.close();
	await bed?.stop();
});

beforeEach(async () => {
	for (const h of bed.hosts) {
		await bed.clearFaults(h);
		await bed.setPackages(h, [
			{ name: 'openssl', arch: 'amd64', installed: '1.0-1', candidate: '1.0-2', suites: ['bookworm-security'] }
		]);
	}
	const scan = await startScan(systemActor, { nodes: list.map((n) => n.id), refresh: true });
	await waitForRun(scan.id, ['succeeded'], 60_000);
});

describe('staged patching', () => {
	it('prod starts only once staging has soaked its hours without a failure, then succeeds', async () => {
		const { stagedId, firstRunId } = await startStagedUpdate(systemActor, list, REQUEST, {
			order: ['env=staging'],
			soakHours: 24
		});
		const first = await waitForRun(firstRunId, ['succeeded', 'failed'], 60_000);
		expect(first.tasks.map((t) => [t.nodeName, t.state])).toEqual([
			[host(0).name, 'succeeded'],
			[host(1).name, 'succeeded']
		]);
		expect(await driveStagedUpdates()).toEqual({ started: [], stopped: [] });
		const soaking = await stagedRow(stagedId);
		expect(soaking.state).toBe('soaking');
		expect(soaking.nextStartAt!.getTime()).toBe(first.endedAt!.getTime() + 24 * HOUR);
		expect(soaking.stages.map((s) => [s.label, s.nodeIds.length, s.runId !== null])).toEqual([
			['env=staging', 2, true],
			[null, 2, false]
		]);
		// A minute before the soak is over, prod is still left alone.
		const due = soaking.nextStartAt!.getTime();
		expect(await driveStagedUpdates(new Date(due - 60_000))).toEqual({ started: [], stopped: [] });
		expect([await installed(2), await installed(3)]).toEqual(['1.0-1', '1.0-1']);
		const view = (await listStagedUpdates()).find((v) => v.id === stagedId)!;
		expect(view).toMatchObject({ state: 'soaking', current: 0, next_start_at: new Date(due).toISOString() });

		expect(await driveStagedUpdates(new Date(due + 60_000))).toEqual({ started: [stagedId], stopped: [] });
		// Two consoles checking at once: the stage is claimed, never started twice.
		expect(await driveStagedUpdates(new Date(due + 60_000))).toEqual({ started: [], stopped: [] });
		const running = await stagedRow(stagedId);
		expect(running).toMatchObject({ state: 'running', current: 1 });
		const second = await waitForRun(running.stages[1]!.runId!, ['succeeded', 'failed'], 60_000);
		expect(second.tasks.map((t) => [t.nodeName, t.state])).toEqual([
			[host(2).name, 'succeeded'],
			[host(3).name, 'succeeded']
		]);
		await driveStagedUpdates(new Date(due + 2 * HOUR));
		expect(await stagedRow(stagedId)).toMatchObject({ state: 'succeeded', nextStartAt: null, reason: null });
		expect([await installed(2), await installed(3)]).toEqual(['1.0-2', '1.0-2']);
	}, 180_000);

	it('a failed stage stops the later ones with the reason; prod is never touched', async () => {
		await bed.setFault(host(1), 'fail-step', 'apt-get');
		const logged = (await bed.commandLog(host(2))).length;
		const { stagedId, firstRunId } = await startStagedUpdate(systemActor, list, REQUEST, {
			order: ['env=staging'],
			soakHours: 1
		});
		await waitForRun(firstRunId, ['failed'], 60_000);
		expect(await driveStagedUpdates()).toEqual({ started: [], stopped: [stagedId] });
		const row = await stagedRow(stagedId);
		expect(row.state).toBe('stopped');
		expect(row.reason).toMatch(/^Stage env=staging failed \(.+\): the later stages were not started\.$/);
		// However much later it is checked, nothing more starts.
		expect(await driveStagedUpdates(new Date(Date.now() + 100 * HOUR))).toEqual({ started: [], stopped: [] });
		expect((await stagedRow(stagedId)).stages[1]!.runId).toBeNull();
		expect(await aptRan(2, logged)).toEqual([]);
		expect(await installed(2)).toBe('1.0-1');
	}, 120_000);

	it('a staging node that fails during the soak stops prod, even after the soak is over', async () => {
		const logged = (await bed.commandLog(host(3))).length;
		const { stagedId, firstRunId } = await startStagedUpdate(systemActor, list, REQUEST, {
			order: ['env=staging'],
			soakHours: 24
		});
		await waitForRun(firstRunId, ['succeeded'], 60_000);
		await driveStagedUpdates();
		expect((await stagedRow(stagedId)).state).toBe('soaking');
		// A later update of a staging node fails while the stage soaks.
		await bed.setPackages(host(0), [
			{ name: 'curl', arch: 'amd64', installed: '1.0-1', candidate: '1.0-2', suites: ['bookworm'] }
		]);
		await bed.setFault(host(0), 'fail-step', 'apt-get');
		const later = await startUpdate(systemActor, [list[0]!], REQUEST);
		await waitForRun(later.id, ['failed'], 60_000);
		expect(await driveStagedUpdates(new Date(Date.now() + 48 * HOUR))).toEqual({ started: [], stopped: [stagedId] });
		const row = await stagedRow(stagedId);
		expect(row.reason).toMatch(
			new RegExp(
				`^${host(0).name} failed while stage env=staging soaked \\(.+\\): the later stages were not started\\.$`
			)
		);
		expect(row.stages[1]!.runId).toBeNull();
		expect(await aptRan(3, logged)).toEqual([]);
	}, 120_000);

	it('a version published between stages is not installed: that prod node is held as drifted, the stage stops with the difference', async () => {
		const logged = (await bed.commandLog(host(2))).length;
		const { stagedId, firstRunId } = await startStagedUpdate(systemActor, list, REQUEST, {
			order: ['env=staging'],
			soakHours: 24
		});
		expect((await stagedRow(stagedId)).stages.map((s) => s.approved)).toEqual([
			{
				[list[0]!.id]: [{ name: 'openssl', candidate: '1.0-2' }],
				[list[1]!.id]: [{ name: 'openssl', candidate: '1.0-2' }]
			},
			{
				[list[2]!.id]: [{ name: 'openssl', candidate: '1.0-2' }],
				[list[3]!.id]: [{ name: 'openssl', candidate: '1.0-2' }]
			}
		]);
		await waitForRun(firstRunId, ['succeeded'], 60_000);
		await driveStagedUpdates();
		const soaking = await stagedRow(stagedId);
		expect(soaking.state).toBe('soaking');
		// While staging soaks, the archive publishes a newer openssl that only one prod host sees yet.
		await bed.setPackages(host(2), [
			{ name: 'openssl', arch: 'amd64', installed: '1.0-1', candidate: '1.0-3', suites: ['bookworm-security'] }
		]);
		const due = soaking.nextStartAt!.getTime();
		expect(await driveStagedUpdates(new Date(due + 60_000))).toEqual({ started: [stagedId], stopped: [] });
		const second = await waitForRun((await stagedRow(stagedId)).stages[1]!.runId!, ['succeeded', 'failed'], 60_000);
		const drift = 'plan: the node changed since the plan was approved: openssl would be 1.0-3, the plan says 1.0-2';
		expect(second.tasks.map((t) => [t.nodeName, t.state, t.error])).toEqual([
			[host(2).name, 'failed', drift],
			[host(3).name, 'succeeded', null]
		]);
		expect(await driveStagedUpdates(new Date(due + 2 * HOUR))).toEqual({ started: [], stopped: [stagedId] });
		const reason = `The rest failed (1 of 2 tasks failed: ${host(2).name}: ${drift}).`;
		expect(await stagedRow(stagedId)).toMatchObject({ state: 'stopped', reason });
		expect((await listStagedUpdates()).find((v) => v.id === stagedId)).toMatchObject({ state: 'stopped', reason });
		// What was installed is what the operator approved: 1.0-2 everywhere it went, nothing on the drifted host
		// (not even a simulation: its plan step refused), which shows FAILED with why until an update succeeds.
		expect([await installed(0), await installed(1), await installed(2), await installed(3)]).toEqual([
			'1.0-2',
			'1.0-2',
			'1.0-1',
			'1.0-2'
		]);
		expect(await aptRan(2, logged)).toEqual([]);
		expect(await statusOf(list[2]!.id)).toBe('FAILED');
	}, 180_000);
});
