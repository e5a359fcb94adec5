import { randomBytes } from 'node:crypto';
import { and, asc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { createRole } from '../../src/lib/server/codesync/roles';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import {
	events,
	nodes,
	sysCandidateVersions,
	sysNodeScans,
	sysPendingPackages,
	sysSchedules,
	type Node
} from '../../src/lib/server/db/schema';
import { cancelRun, getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerDomains } from '../../src/lib/server/domains';
import { alertsFor, statusOf } from '../../src/lib/server/fleet/status';
import { startScan, startUpdate } from '../../src/lib/server/sysupdates/runs';
import { runScheduledSystemUpdates, saveScanSchedule, scanSchedule } from '../../src/lib/server/sysupdates/schedule';
import { saveWindow, skipNextWindow } from '../../src/lib/server/sysupdates/windows';
import { windowSchema } from '../../src/lib/schemas/system-updates';
import { freshPostgres } from '../support/databases';
import { registerTestbedNodes, sshAsRoot } from '../support/testbed-nodes';
import { waitFor, waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost, type TestPackage } from '../testbed/testbed';

/**
 * System Updates end to end on 9 real sshd hosts (127.0.1.162–170): scans, policies, the dpkg lock, hung and
 * cancelled apt, role-aware reboots. What the tests check on the hosts is read from their own files and logs.
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
const MIXED = [
	pkg('curl', ['bookworm']),
	pkg('libc6', ['bookworm-security', 'bookworm']),
	pkg('openssl', ['bookworm-security'])
];

const ssh = async (h: TestHost, script: string) => (await sshAsRoot(bed, h, script)).stdout;

/** Processes on the host whose command line mentions `what` (its own /proc, read over SSH). */
async function processesOn(h: TestHost, what: string): Promise<string[]> {
	const out = await ssh(h, `for p in /proc/[0-9]*; do tr '\\0' ' ' <"$p/cmdline" 2>/dev/null; echo; done`);
	return out.split('\n').filter((l) => l.includes(what) && !l.includes('/proc/'));
}

async function logOf(taskId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
}

async function setPolicy(i: number, policy: 'full' | 'security' | 'manual') {
	const [row] = await db()
		.update(nodes)
		.set({ policy })
		.where(eq(nodes.id, node(i).id))
		.returning();
	nodeOf.set(row!.name, row!);
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: 9, firstHost: 162, roles: ['db'] });
	pg = await freshPostgres('flotilla_sysupdates');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	// 0-2: policies (role web); 3-5: role db, 5 its control plane; 6: lock, hang, cancel; 7-8: role cache.
	const roles = ['web', 'web', 'web', 'db', 'db', 'db', 'misc', 'cache', 'cache'];
	const rows = await registerTestbedNodes(bed, (_, i) => ({
		roles: [roles[i]!],
		policy: 'full',
		controlPlane: i === 5
	}));
	for (const r of rows) nodeOf.set(r.name, r);
	// The db role's health: its unit must be active on the node, before and after every reboot.
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
	for (const i of [3, 4, 5]) await ssh(host(i), 'systemctl start db');
	await startEngine({ concurrency: 50, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('scan', () => {
	it('records pending packages with security marked, reboot-required, services to restart; an unreachable node fails with why', async () => {
		await bed.setPackages(host(0), MIXED);
		await bed.setPackages(host(1), [pkg('tzdata', ['bookworm-updates'])]);
		await bed.requireReboot(host(1), ['linux-image-6.1.0-29-amd64']);
		await bed.stopHost(host(2));
		try {
			const run = await startScan(systemActor, { nodes: [host(0).name, host(1).name, host(2).name], refresh: true });
			const done = await waitForRun(run.id, ['succeeded', 'failed'], 60_000);
			expect(done.tasks.map((t) => [t.nodeName, t.state])).toEqual([
				[host(0).name, 'succeeded'],
				[host(1).name, 'succeeded'],
				[host(2).name, 'failed']
			]);
		} finally {
			await bed.startHost(host(2));
		}
		const pending = await db()
			.select()
			.from(sysPendingPackages)
			.where(eq(sysPendingPackages.nodeId, node(0).id))
			.orderBy(asc(sysPendingPackages.name));
		expect(pending.map((p) => [p.name, p.installed, p.candidate, p.suites, p.security, p.securityReason])).toEqual([
			['curl', '1.0-1', '1.0-2', ['bookworm'], false, null],
			[
				'libc6',
				'1.0-1',
				'1.0-2',
				['bookworm-security', 'bookworm'],
				true,
				'offered by the security pocket bookworm-security'
			],
			['openssl', '1.0-1', '1.0-2', ['bookworm-security'], true, 'offered by the security pocket bookworm-security']
		]);
		const scans = new Map((await db().select().from(sysNodeScans)).map((s) => [s.nodeId, s]));
		expect(scans.get(node(0).id)).toMatchObject({
			pendingCount: 3,
			securityCount: 2,
			rebootRequired: false,
			servicesToRestart: [],
			lastError: null
		});
		expect(scans.get(node(1).id)).toMatchObject({
			pendingCount: 1,
			securityCount: 0,
			rebootRequired: true,
			rebootPackages: ['linux-image-6.1.0-29-amd64']
		});
		expect(scans.get(node(2).id)).toMatchObject({ scannedAt: null, pendingCount: 0 });
		expect(scans.get(node(2).id)!.lastError).toMatch(/127\.0\.1\.164/);
		// The soak gate's basis: each candidate version with the first node that was offered it.
		const seen = await db().select().from(sysCandidateVersions).orderBy(asc(sysCandidateVersions.name));
		expect(seen.map((s) => [s.name, s.version, s.security])).toEqual([
			['curl', '1.0-2', false],
			['libc6', '1.0-2', true],
			['openssl', '1.0-2', true],
			['tzdata', '1.0-2', false]
		]);
		const alerts = await alertsFor([node(0).id, node(1).id, node(2).id]);
		expect(Object.fromEntries(alerts)).toEqual({
			[node(0).id]: ['security_updates'],
			[node(1).id]: ['reboot_required']
		});
		// Only apt's reading commands ran: nothing was installed.
		const log = (await bed.commandLog(host(0))).map((l) => l.replace(/^\d+ /, ''));
		expect(log).toEqual([
			'apt-get -q -o DPkg::Lock::Timeout=120 update',
			'apt list --upgradable',
			'apt-mark showhold',
			'needrestart -b -r l'
		]);
	}, 90_000);

	it('a hung apt is killed at the deadline: the task fails and nothing is left running on the host', async () => {
		await bed.setFault(host(6), 'hang', 'apt-get');
		try {
			const run = await startScan(systemActor, { nodes: [host(6).name], refresh: true }, { commandTimeoutSeconds: 2 });
			const done = await waitForRun(run.id, ['failed'], 60_000);
			expect(done.tasks[0]!.error).toMatch(/deadline|timed out|124/i);
			await waitFor('the hung apt-get to be gone', async () => (await processesOn(host(6), 'apt-get')).length === 0);
			expect(await processesOn(host(6), 'sleep infinity')).toEqual([]);
		} finally {
			await bed.clearFaults(host(6));
		}
	}, 90_000);
});

describe('apply per policy', () => {
	it('full applies everything and reboots at once; security applies security updates only and leaves the reboot; manual applies nothing', async () => {
		for (const i of [0, 1, 2]) await bed.setPackages(host(i), MIXED);
		await setPolicy(0, 'full');
		await setPolicy(1, 'security');
		await setPolicy(2, 'manual');
		const run = await startUpdate(
			systemActor,
			[node(0), node(1), node(2)],
			{ force_full: false },
			{ rebootTimeoutSeconds: 60 }
		);
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 120_000);
		expect(done.tasks.map((t) => [t.nodeName, t.state, t.error])).toEqual([
			[host(0).name, 'succeeded', null],
			[host(1).name, 'succeeded', null],
			[host(2).name, 'skipped', 'policy manual: nothing is applied unless an operator forces it']
		]);
		const installed = async (i: number) =>
			Object.fromEntries((await bed.packages(host(i))).map((p) => [p.name, p.installed === p.candidate]));
		expect(await installed(0)).toEqual({ curl: true, libc6: true, openssl: true });
		expect(await installed(1)).toEqual({ curl: false, libc6: true, openssl: true });
		expect(await installed(2)).toEqual({ curl: false, libc6: false, openssl: false });
		// libc6 asked for a reboot on both: the full node rebooted (the request is gone, the host logged its boot),
		// the security node waits for its window.
		const log0 = await bed.commandLog(host(0));
		expect(log0.some((l) => / \(booted\)$/.test(l))).toBe(true);
		expect((await bed.commandLog(host(1))).some((l) => / \(booted\)$/.test(l))).toBe(false);
		const scans = new Map((await db().select().from(sysNodeScans)).map((s) => [s.nodeId, s]));
		expect(scans.get(node(0).id)).toMatchObject({ rebootRequired: false, pendingCount: 0 });
		expect(scans.get(node(1).id)).toMatchObject({
			rebootRequired: true,
			rebootPackages: ['libc6', 'linux-image-6.1.0-29-amd64'],
			pendingCount: 1
		});
		// Non-interactive apt with conffile answers and the lock timeout, only the planned packages, after a simulation.
		const apt = log0.map((l) => l.replace(/^\d+ /, '')).filter((l) => l.startsWith('apt-get') && l.includes('install'));
		expect(apt).toEqual([
			'apt-get -y -q -s -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 install --only-upgrade -- curl libc6 openssl',
			'apt-get -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o DPkg::Lock::Timeout=300 install --only-upgrade -- curl libc6 openssl'
		]);
		const logLines = await logOf(done.tasks[1]!.id);
		expect(logLines).toContain('reboot: reboot required: left for the maintenance window');
	}, 180_000);

	it('force_full applies everything on a manual node', async () => {
		const run = await startUpdate(systemActor, [node(2)], { force_full: true, reboot: 'never' });
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 60_000);
		expect(done.tasks[0]!.state).toBe('succeeded');
		expect((await bed.packages(host(2))).every((p) => p.installed === p.candidate)).toBe(true);
	}, 90_000);
});

describe('the dpkg lock', () => {
	const holdLock = (seconds: number) =>
		ssh(
			host(6),
			`setsid sh -c 'echo $$ >/var/lib/flotilla-testbed/apt/lock-frontend; exec sleep ${seconds}' >/dev/null 2>&1 & sleep 0.3`
		);

	it('a held lock is waited for, then the update proceeds', async () => {
		await bed.setPackages(host(6), [pkg('openssl', ['bookworm-security'])]);
		await holdLock(600);
		const run = await startUpdate(
			systemActor,
			[node(6)],
			{ force_full: false, reboot: 'never' },
			{ lockTimeoutSeconds: 60 }
		);
		// The lock is let go only once the live log shows apt waiting for it: however long the plan and the
		// simulation take on a busy machine, the install meets the held lock.
		const taskId = (await getRun(run.id)).tasks[0]!.id;
		await waitFor(
			'apt to wait for the lock',
			async () => (await logOf(taskId)).some((l) => l.startsWith('apply: Waiting for cache lock')),
			60_000
		);
		expect((await bed.packages(host(6)))[0]!.installed).toBe('1.0-1');
		await ssh(host(6), 'kill "$(cat /var/lib/flotilla-testbed/apt/lock-frontend)"');
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 90_000);
		expect(done.tasks[0]!.state).toBe('succeeded');
		expect((await bed.packages(host(6)))[0]!.installed).toBe('1.0-2');
	}, 120_000);

	it('a lock never released fails the update with the reason, nothing installed', async () => {
		await bed.setPackages(host(6), [pkg('openssl', ['bookworm-security'])]);
		await holdLock(600);
		const run = await startUpdate(
			systemActor,
			[node(6)],
			{ force_full: false, reboot: 'never' },
			{ lockTimeoutSeconds: 2 }
		);
		const done = await waitForRun(run.id, ['failed'], 60_000);
		expect(done.tasks[0]!.error).toMatch(
			/^apply: apt waited 2 s for \/var\/lib\/dpkg\/lock-frontend, still held by process \d+ \(sleep\); nothing was installed$/
		);
		expect((await bed.packages(host(6)))[0]!.installed).toBe('1.0-1');
	}, 90_000);

	it('a cancel while apt waits ends the task and kills apt on the host', async () => {
		const run = await startUpdate(
			systemActor,
			[node(6)],
			{ force_full: false, reboot: 'never' },
			{ lockTimeoutSeconds: 600 }
		);
		await waitFor(
			'apt to wait for the lock',
			async () => (await processesOn(host(6), 'install --only-upgrade')).length > 0,
			60_000
		);
		await cancelRun(systemActor, run.id);
		const done = await waitForRun(run.id, ['cancelled'], 60_000);
		expect(done.tasks[0]!.state).toBe('cancelled');
		await waitFor('apt-get to be gone', async () => (await processesOn(host(6), 'apt-get')).length === 0);
		await ssh(host(6), 'kill "$(cat /var/lib/flotilla-testbed/apt/lock-frontend)"');
	}, 120_000);
});

describe('reboots', () => {
	it('three nodes of a role reboot one at a time, the control-plane node last, each healthy after', async () => {
		for (const i of [3, 4, 5]) await bed.setPackages(host(i), [pkg('libc6', ['bookworm-security'])]);
		const run = await startUpdate(
			systemActor,
			[node(5), node(3), node(4)],
			{ force_full: false },
			{ rebootTimeoutSeconds: 60 }
		);
		const done = await waitForRun(run.id, ['succeeded', 'failed'], 180_000);
		expect(done.tasks.map((t) => [t.nodeName, t.phase, t.state])).toEqual([
			[host(3).name, 0, 'succeeded'],
			[host(4).name, 1, 'succeeded'],
			[host(5).name, 2, 'succeeded']
		]);
		// From the hosts' own logs: each host's down time (reboot → booted) overlaps no other's.
		const windows = [];
		for (const i of [3, 4, 5]) {
			const log = await bed.commandLog(host(i));
			const down = Number(log.find((l) => / reboot$/.test(l))!.split(' ')[0]);
			const up = Number(log.find((l) => / \(booted\)$/.test(l))!.split(' ')[0]);
			windows.push({ i, down, up });
		}
		windows.sort((a, b) => a.down - b.down);
		expect(windows.map((w) => w.i)).toEqual([3, 4, 5]);
		for (let k = 1; k < windows.length; k++) expect(windows[k]!.down).toBeGreaterThan(windows[k - 1]!.up);
		// Each node's session dropped, a new one opened, and its role was healthy on it, in that order.
		const cycle = [
			'reboot: rebooting',
			'reboot: the node went down',
			'reboot: the node is back',
			'reboot: db: healthy (systemctl is-active db.service, attempt 1)'
		];
		for (const t of done.tasks) expect((await logOf(t.id)).filter((l) => cycle.includes(l))).toEqual(cycle);
	}, 240_000);

	it('a node that never comes back fails, and stops the reboots of its role', async () => {
		for (const i of [7, 8]) await bed.setPackages(host(i), [pkg('linux-image-amd64', ['bookworm-security'])]);
		await bed.setFault(host(7), 'fail-boot');
		try {
			const run = await startUpdate(
				systemActor,
				[node(7), node(8)],
				{ force_full: false },
				{ rebootTimeoutSeconds: 8 }
			);
			const done = await waitForRun(run.id, ['succeeded', 'failed'], 120_000);
			// failed, not rolled_back: packages are never downgraded, nothing was put back.
			expect(done.tasks.map((t) => [t.nodeName, t.state])).toEqual([
				[host(7).name, 'failed'],
				[host(8).name, 'failed']
			]);
			expect(done.tasks[0]!.error).toBe(`reboot: ${host(7).name} did not come back within 8 s of its reboot`);
			expect(done.tasks[1]!.error).toBe(
				`reboot: not rebooted: the reboots of role cache stopped in this run: ${host(7).name} did not come back (${host(7).name} did not come back within 8 s of its reboot)`
			);
			expect(await statusOf(node(7).id)).toBe('FAILED');
			expect(await statusOf(node(8).id)).toBe('FAILED');
			expect((await bed.commandLog(host(8))).some((l) => / reboot$/.test(l))).toBe(false);
		} finally {
			await bed.clearFaults(host(7));
			await bed.startHost(host(7));
		}
	}, 180_000);
});

describe('schedule and maintenance windows', () => {
	it('the daily scan fires once per firing, on one console', async () => {
		await bed.setPackages(host(0), MIXED);
		// First tick: the schedule starts counting; nothing fires at once.
		const first = await runScheduledSystemUpdates({
			cron: '0 2 * * *',
			timeZone: 'UTC',
			now: new Date('2026-03-09T01:30:00Z')
		});
		expect(first.scanRunId).toBeNull();
		const fired = await runScheduledSystemUpdates({
			cron: '0 2 * * *',
			timeZone: 'UTC',
			now: new Date('2026-03-09T02:00:30Z')
		});
		expect(fired.scanRunId).not.toBeNull();
		const again = await runScheduledSystemUpdates({
			cron: '0 2 * * *',
			timeZone: 'UTC',
			now: new Date('2026-03-09T02:01:30Z')
		});
		expect(again.scanRunId).toBeNull();
		const [row] = await db().select().from(sysSchedules);
		expect(row!.lastFiredAt).toEqual(new Date('2026-03-09T02:00:00Z'));
		const done = await waitForRun(fired.scanRunId!, ['succeeded', 'failed'], 90_000);
		expect(done.tasks.length).toBe(bed.hosts.length);
		expect(done.state).toBe('succeeded');
	}, 120_000);

	it('a schedule set on the page overrides the configured one, counts from when it was set, and can be off', async () => {
		await saveScanSchedule(systemActor, { cron: '30 3 * * *', time_zone: 'UTC' });
		const configured = { cron: '0 2 * * *', timeZone: 'UTC' };
		expect(await scanSchedule(configured)).toEqual({ cron: '30 3 * * *', timeZone: 'UTC', setOnPage: true });
		const at = (iso: string) => runScheduledSystemUpdates({ ...configured, now: new Date(iso) });
		// Set now (the real clock): it first fires at the next 03:30 UTC after now, and not at 02:00 as configured.
		const due = new Date();
		due.setUTCHours(3, 30, 0, 0);
		if (due <= new Date()) due.setUTCDate(due.getUTCDate() + 1);
		const offset = (ms: number) => new Date(due.getTime() + ms).toISOString();
		expect((await at(offset(-60_000))).scanRunId).toBeNull();
		const fired = await at(offset(30_000));
		expect(fired.scanRunId).not.toBeNull();
		await waitForRun(fired.scanRunId!, ['succeeded', 'failed'], 90_000);
		await saveScanSchedule(systemActor, { cron: 'off', time_zone: 'UTC' });
		expect(await scanSchedule(configured)).toMatchObject({ cron: null, setOnPage: true });
		expect((await at(offset(86_400_000 + 30_000))).scanRunId).toBeNull();
	}, 120_000);

	it('inside its window a full node is updated and a security node only reboots; outside, or skipped, nothing happens', async () => {
		const w = await saveWindow(
			systemActor,
			windowSchema.parse({
				scope: 'role',
				target: 'web',
				start: '02:00',
				end: '05:00',
				time_zone: 'UTC',
				days: ['monday']
			})
		);
		const outside = await runScheduledSystemUpdates({
			cron: null,
			timeZone: 'UTC',
			now: new Date('2026-03-09T06:00:00Z')
		});
		expect(outside.updateRunIds).toEqual([]);
		await skipNextWindow(systemActor, w.id, true, new Date('2026-03-09T01:00:00Z'));
		const skipped = await runScheduledSystemUpdates({
			cron: null,
			timeZone: 'UTC',
			now: new Date('2026-03-09T03:00:00Z')
		});
		expect(skipped.updateRunIds).toEqual([]);
		await skipNextWindow(systemActor, w.id, false);
		// Two minutes before the window closes: too short for either node's work, reported and not started.
		const late = await runScheduledSystemUpdates({
			cron: null,
			timeZone: 'UTC',
			now: new Date('2026-03-09T04:58:00Z')
		});
		expect(late.updateRunIds).toEqual([]);
		expect(late.tooShort.map((t) => [t.node, t.windowMinutes]).sort()).toEqual(
			[
				[host(0).name, 2],
				[host(1).name, 2]
			].sort()
		);
		expect(late.tooShort.every((t) => t.needsMinutes > 2)).toBe(true);
		const bootsBefore = (await bed.commandLog(host(1))).filter((l) => / \(booted\)$/.test(l)).length;
		const inside = await runScheduledSystemUpdates({
			cron: null,
			timeZone: 'UTC',
			now: new Date('2026-03-09T03:00:00Z')
		});
		expect(inside.updateRunIds.length).toBe(2);
		const runs = [];
		for (const id of inside.updateRunIds) runs.push(await waitForRun(id, ['succeeded', 'failed'], 120_000));
		expect(runs.map((r) => r.tasks.map((t) => [t.nodeName, t.state]))).toEqual([
			[[host(0).name, 'succeeded']],
			[[host(1).name, 'succeeded']]
		]);
		expect((await bed.packages(host(0))).every((p) => p.installed === p.candidate)).toBe(true);
		// The security node rebooted in its window and installed nothing (curl is not a security update).
		expect((await bed.commandLog(host(1))).filter((l) => / \(booted\)$/.test(l)).length).toBe(bootsBefore + 1);
		expect((await bed.packages(host(1))).find((p) => p.name === 'curl')!.installed).toBe('1.0-1');
		// The manual node in the same role was left alone.
		expect((await bed.packages(host(2))).every((p) => p.installed === p.candidate)).toBe(true);
	}, 240_000);

	it('the soak gate: automatic updates wait until the fleet has known a version for N days, security ones do not', async () => {
		await bed.setPackages(host(0), [
			pkg('curl', ['bookworm'], '1.0-2', '1.0-3'),
			pkg('openssl', ['bookworm-security'], '1.0-2', '1.0-3')
		]);
		const scan = await startScan(systemActor, { nodes: [host(0).name], refresh: true });
		await waitForRun(scan.id, ['succeeded'], 60_000);
		const inside = new Date('2026-03-09T03:00:00Z');
		const soak = { days: 7, securityExempt: true };
		const first = await runScheduledSystemUpdates({ cron: null, timeZone: 'UTC', now: inside, soak });
		const done = await waitForRun(first.updateRunIds[0]!, ['succeeded', 'failed'], 60_000);
		expect(done.tasks.map((t) => [t.nodeName, t.state])).toEqual([[host(0).name, 'succeeded']]);
		expect(await logOf(done.tasks[0]!.id)).toContain(
			'plan: held: curl (soaking: the fleet has known 1.0-3 for 0 of 7 days)'
		);
		expect(Object.fromEntries((await bed.packages(host(0))).map((p) => [p.name, p.installed]))).toEqual({
			curl: '1.0-2',
			openssl: '1.0-3'
		});
		// Still soaking: nothing to start.
		expect((await runScheduledSystemUpdates({ cron: null, timeZone: 'UTC', now: inside, soak })).updateRunIds).toEqual(
			[]
		);
		await db()
			.update(sysCandidateVersions)
			.set({ firstSeenAt: new Date(Date.now() - 8 * 86_400_000) })
			.where(eq(sysCandidateVersions.name, 'curl'));
		const later = await runScheduledSystemUpdates({ cron: null, timeZone: 'UTC', now: inside, soak });
		await waitForRun(later.updateRunIds[0]!, ['succeeded'], 60_000);
		expect((await bed.packages(host(0))).find((p) => p.name === 'curl')!.installed).toBe('1.0-3');
	}, 180_000);
});
