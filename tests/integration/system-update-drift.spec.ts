import { randomBytes } from 'node:crypto';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { holdSchema } from '../../src/lib/schemas/system-updates';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes, type Node } from '../../src/lib/server/db/schema';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerDomains } from '../../src/lib/server/domains';
import { statusOf } from '../../src/lib/server/fleet/status';
import { createHold } from '../../src/lib/server/sysupdates/holds';
import { startNodeUpdate, startScan, startUpdate } from '../../src/lib/server/sysupdates/runs';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes, sshAsRoot } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost, type TestPackage } from '../testbed/testbed';

/**
 * No drift between plan and apply (docs/system-updates.md, "Apply"), on 4 real sshd hosts (127.0.1.5–8): an
 * update pinned to the plan an operator approved refuses when the node offers something else by then, and
 * `apt-get -s` that would install a package not in the plan, remove one, or keep a planned one back refuses the
 * update before apt installs anything. A role's hold pattern keeps its package out of a real update, and a role
 * that is unhealthy after the update fails it.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const nodeOf = new Map<string, Node>();
const host = (i: number) => bed.hosts[i] as TestHost;
const node = (i: number) => nodeOf.get(host(i).name)!;

const pkg = (name: string, suites: string[], installed = '1.0-1', candidate = '1.0-2'): TestPackage => ({
	name,
	arch: 'amd64',
	installed,
	candidate,
	suites
});

/** The apt commands the host ran, without their timestamps. */
async function aptLog(h: TestHost): Promise<string[]> {
	return (await bed.commandLog(h)).map((l) => l.replace(/^\d+ /, '')).filter((l) => l.startsWith('apt-get'));
}

const ssh = async (h: TestHost, script: string) => (await sshAsRoot(bed, h, script)).stdout;

const versions = async (h: TestHost) => Object.fromEntries((await bed.packages(h)).map((p) => [p.name, p.installed]));

async function logOf(taskId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 4, firstHost: 5, roles: ['db'] });
	pg = await freshPostgres('flotilla_sysupdate_drift');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	// A role each, so one node's failure never holds back another's reboot.
	const rows = await registerTestbedNodes(bed, (_, i) => ({ roles: [`drift${i}`], policy: 'full' }));
	for (const r of rows) nodeOf.set(r.name, r);
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('no drift between plan and apply', () => {
	it('a node that changed since the approved plan (a new version, a new package) refuses the update; nothing is installed', async () => {
		await bed.setPackages(host(0), [pkg('curl', ['bookworm']), pkg('openssl', ['bookworm-security'])]);
		const scan = await startScan(systemActor, { nodes: [host(0).name], refresh: true });
		await waitForRun(scan.id, ['succeeded'], 60_000);
		// After the scan (the plan the operator reviews), the archive moves on.
		await bed.setPackages(host(0), [
			pkg('curl', ['bookworm']),
			pkg('openssl', ['bookworm-security'], '1.0-1', '1.0-3'),
			pkg('tzdata', ['bookworm-updates'])
		]);
		const run = await startNodeUpdate(systemActor, host(0).name, { force_full: false, reboot: 'never' });
		const done = await waitForRun(run.id, ['failed', 'succeeded'], 60_000);
		expect(done.tasks.map((t) => [t.state, t.error])).toEqual([
			[
				'failed',
				'plan: the node changed since the plan was approved: openssl would be 1.0-3, the plan says 1.0-2; tzdata 1.0-2 is not in the plan'
			]
		]);
		expect(await versions(host(0))).toEqual({ curl: '1.0-1', openssl: '1.0-1', tzdata: '1.0-1' });
		expect((await aptLog(host(0))).filter((l) => l.includes('install'))).toEqual([]);
		// The failure shows on the node until an update succeeds.
		expect(await statusOf(node(0).id)).toBe('FAILED');
	}, 90_000);

	it('apt-get -s pulling in a new package, removing one or keeping one back refuses the update before anything is installed', async () => {
		for (const i of [1, 2, 3]) {
			await bed.setPackages(host(i), [
				pkg('curl', ['bookworm']),
				pkg('openssl', ['bookworm-security']),
				pkg('oldtool', ['bookworm'], '0.9-1', '0.9-1')
			]);
		}
		await bed.setAptResolver(host(1), [
			{ upgrading: 'curl', pulls: { name: 'libcurl5', arch: 'amd64', version: '8.0-1', suite: 'bookworm' } }
		]);
		await bed.setAptResolver(host(2), [{ upgrading: 'openssl', removes: 'oldtool' }]);
		await bed.setAptResolver(host(3), [{ upgrading: 'openssl', kept: true }]);
		const run = await startUpdate(systemActor, [node(1), node(2), node(3)], { force_full: false, reboot: 'never' });
		const done = await waitForRun(run.id, ['failed', 'succeeded'], 90_000);
		expect(done.tasks.map((t) => [t.nodeName, t.state, t.error])).toEqual([
			[host(1).name, 'failed', 'simulate: apt-get -s differs from the plan: libcurl5 8.0-1 is not in the plan'],
			[host(2).name, 'failed', 'simulate: apt-get -s differs from the plan: oldtool would be removed'],
			[host(3).name, 'failed', 'simulate: apt-get -s differs from the plan: openssl 1.0-2 would not be installed']
		]);
		for (const i of [1, 2, 3]) {
			// Only simulations ran (the step's retry simulates once more): nothing installed, nothing removed.
			expect(await versions(host(i))).toEqual({ curl: '1.0-1', openssl: '1.0-1', oldtool: '0.9-1' });
			const installs = (await aptLog(host(i))).filter((l) => l.includes('install'));
			expect(installs.length).toBeGreaterThan(0);
			for (const l of installs) expect(l).toMatch(/^apt-get -y -q -s .* install --only-upgrade -- curl openssl$/);
		}
		// Without the resolver's surprise the same update goes through: the refusal was the drift, nothing else.
		await bed.setAptResolver(host(1), []);
		const again = await startUpdate(systemActor, [node(1)], { force_full: false, reboot: 'never' });
		expect((await waitForRun(again.id, ['failed', 'succeeded'], 60_000)).tasks[0]!.state).toBe('succeeded');
		expect(await versions(host(1))).toEqual({ curl: '1.0-2', openssl: '1.0-2', oldtool: '0.9-1' });
	}, 150_000);

	it('in one run of several nodes, each is held to its own approved plan', async () => {
		for (const i of [2, 3]) {
			await bed.setAptResolver(host(i), []);
			await bed.setPackages(host(i), [pkg('curl', ['bookworm']), pkg('openssl', ['bookworm-security'])]);
		}
		// The operator saw both packages on one node, only curl on the other (openssl came after its scan).
		const approved = {
			[node(2).id]: [
				{ name: 'curl', candidate: '1.0-2' },
				{ name: 'openssl', candidate: '1.0-2' }
			],
			[node(3).id]: [{ name: 'curl', candidate: '1.0-2' }]
		};
		const run = await startUpdate(
			systemActor,
			[node(2), node(3)],
			{ force_full: false, reboot: 'never' },
			{ approved }
		);
		const done = await waitForRun(run.id, ['failed', 'succeeded'], 90_000);
		expect(done.tasks.map((t) => [t.nodeName, t.state, t.error])).toEqual([
			[host(2).name, 'succeeded', null],
			[host(3).name, 'failed', 'plan: the node changed since the plan was approved: openssl 1.0-2 is not in the plan']
		]);
		expect(await versions(host(2))).toEqual({ curl: '1.0-2', openssl: '1.0-2' });
		expect(await versions(host(3))).toEqual({ curl: '1.0-1', openssl: '1.0-1' });
	}, 120_000);

	it("a role's hold pattern keeps its packages out of a real update, and the log says by what", async () => {
		await bed.setPackages(host(0), [
			pkg('curl', ['bookworm']),
			pkg('linux-image-amd64', ['bookworm-security'], '6.1.0-28', '6.1.0-29')
		]);
		await createHold(
			systemActor,
			holdSchema.parse({ scope: 'role', target: 'drift0', pattern: 'linux-image-*', reason: 'kernel by hand' })
		);
		const run = await startUpdate(systemActor, [node(0)], { force_full: false });
		const done = await waitForRun(run.id, ['failed', 'succeeded'], 60_000);
		expect(done.tasks[0]!.state).toBe('succeeded');
		expect(await logOf(done.tasks[0]!.id)).toContain(
			'plan: held: linux-image-amd64 (hold linux-image-* (role drift0))'
		);
		expect(await versions(host(0))).toEqual({ curl: '1.0-2', 'linux-image-amd64': '6.1.0-28' });
		// The kernel was held, so no reboot was asked for, none happened, and the node is healthy again.
		expect((await bed.commandLog(host(0))).some((l) => / \(booted\)$/.test(l))).toBe(false);
		expect(await statusOf(node(0).id)).not.toBe('FAILED');
	}, 90_000);

	it("the node's roles are checked after the update: an unhealthy one fails it (nothing is downgraded), a healthy one passes", async () => {
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'db',
				path: '/opt/db',
				units: ['db.service'],
				health: { type: 'units' },
				health_timeout_seconds: 5
			})
		);
		const [row] = await db()
			.update(nodes)
			.set({ roles: ['db'] })
			.where(eq(nodes.id, node(1).id))
			.returning();
		nodeOf.set(row!.name, row!);
		await ssh(host(1), 'systemctl stop db');
		await bed.setPackages(host(1), [pkg('curl', ['bookworm'], '1.0-2', '1.0-3')]);
		const run = await startUpdate(systemActor, [node(1)], { force_full: false, reboot: 'never' });
		const done = await waitForRun(run.id, ['failed', 'succeeded'], 90_000);
		expect(done.tasks[0]!.state).toBe('failed');
		expect(done.tasks[0]!.error).toMatch(/^health: db is unhealthy after 5 s: /);
		// Installed, and left as apt left it: packages are never downgraded.
		expect(await versions(host(1))).toEqual({ curl: '1.0-3' });
		expect(await statusOf(node(1).id)).toBe('FAILED');
		await ssh(host(1), 'systemctl start db');
		await bed.setPackages(host(1), [pkg('curl', ['bookworm'], '1.0-3', '1.0-4')]);
		const again = await startUpdate(systemActor, [node(1)], { force_full: false, reboot: 'never' });
		const ok = await waitForRun(again.id, ['failed', 'succeeded'], 90_000);
		expect(ok.tasks[0]!.state).toBe('succeeded');
		expect(await logOf(ok.tasks[0]!.id)).toContain('health: db: healthy (systemctl is-active db.service, attempt 1)');
		expect(await statusOf(node(1).id)).not.toBe('FAILED');
	}, 150_000);
});
