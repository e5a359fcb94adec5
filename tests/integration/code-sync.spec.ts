import { randomBytes } from 'node:crypto';
import { readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { systemActor } from '../../src/lib/server/audit';
import { runAutoUpdates } from '../../src/lib/server/codesync/auto-update';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { buildPlan, triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole } from '../../src/lib/server/codesync/roles';
import { versionsFor } from '../../src/lib/server/codesync/status';
import { countByStatus, statusOf } from '../../src/lib/server/fleet/status';
import { runHealthSweep } from '../../src/lib/server/fleet/sweep';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { codeRoles, events, nodeCodeVersions, nodes } from '../../src/lib/server/db/schema';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerDomains } from '../../src/lib/server/domains';
import { freshPostgres } from '../support/databases';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { waitForRun } from '../support/engine';
import { git } from '../testbed/repos';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Code Sync end to end on 20 real sshd hosts (127.0.1.120–139) with two git roles cloned from real origins:
 * what the tests check on the hosts is read from their filesystems, not from what the console believes.
 */

const HOSTS = 20;
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
const idOf = new Map<string, string>();

const healthy = '#!/bin/sh\nexit 0\n';
/**
 * A commit whose health check the test can break on one host: its healthcheck.sh fails when the marker named
 * `tag` exists there. Earlier commits check other markers (or none), so a rollback to them is healthy.
 */
const breakable = (tag: string) => ({
	message: `health check ${tag}`,
	files: {
		'healthcheck.sh': `#!/bin/sh\n# Healthy unless the test put a marker on this host.\ntest ! -e /etc/flotilla/break-${tag}\n`
	}
});
const breakOn = (host: TestHost, tag: string) => writeFile(join(host.root, 'etc/flotilla', `break-${tag}`), '1');

async function defineGitRole(name: string, order: number) {
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name,
			path: `/opt/${name}`,
			units: [`${name}.service`],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
			health_timeout_seconds: 3,
			order
		})
	);
}

/** A task's log as `step: line`, in order. */
async function logOf(taskId: string): Promise<string[]> {
	const rows = await db()
		.select({ data: events.data })
		.from(events)
		.where(and(eq(events.taskId, taskId), eq(events.type, 'task.output')))
		.orderBy(asc(events.id));
	return rows.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
}

async function updateAndWait(scope = {}, extra: Record<string, unknown> = {}) {
	const { runId } = await triggerUpdate(systemActor, { scope, dry_run: false, concurrency: 10, ...extra });
	return waitForRun(runId!, ['succeeded', 'failed', 'paused'], 120_000);
}

beforeAll(async () => {
	bed = await startTestbed({ hosts: HOSTS, firstHost: 120, roles: ['backend', 'frontend'] });
	pg = await freshPostgres('flotilla_codesync');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	const rows = await registerTestbedNodes(bed, () => ({ roles: ['backend', 'frontend'] }));
	for (const r of rows) idOf.set(r.name, r.id);
	await defineGitRole('backend', 10);
	await defineGitRole('frontend', 20);
	await startEngine({ concurrency: 50, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

describe('Code Sync on real hosts', () => {
	const good: Record<string, string> = {};
	/** The backend commit the dirty-tree host keeps: it is skipped, so it never moves past it. */
	let keptByDirty = '';

	it('notify marks all 20 OUTDATED; Update All checks the new commit out on every host and they are UP_TO_DATE', async () => {
		for (const role of bed.roles) {
			const sha = await bed.addCommit(role, { message: `${role}: health check`, files: { 'healthcheck.sh': healthy } });
			good[role] = sha;
			const r = await notifyCommit(systemActor, { commit: sha, changed_roles: [role], message: 'health check' });
			expect(r.roles).toEqual([{ role, new_commit: true, nodes_outdated: HOSTS }]);
		}
		expect((await countByStatus()).OUTDATED).toBe(HOSTS);

		const plan = await buildPlan();
		expect(plan.nodes).toHaveLength(HOSTS);
		expect(plan.targets).toEqual(good);
		for (const n of plan.nodes)
			expect(n.roles.map((r) => `${r.role}→${r.to}`)).toEqual([`backend→${good.backend}`, `frontend→${good.frontend}`]);

		const run = await updateAndWait();
		expect(run.state).toBe('succeeded');
		expect(run.counts).toMatchObject({ total: HOSTS, succeeded: HOSTS });
		for (const host of bed.hosts) {
			for (const role of bed.roles) expect(await bed.checkedOutCommit(host, role)).toBe(good[role]);
		}
		expect((await countByStatus()).UP_TO_DATE).toBe(HOSTS);
		// Installed and restarted too: install.sh wrote the revision it built, and each step ran in order.
		const t = run.tasks[0]!;
		expect(t.steps.map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual(
			['prepare', 'fetch', 'preflight', 'switch', 'install', 'restart', 'verify', 'record'].map(
				(n) => `do:${n}:succeeded`
			)
		);
	}, 180_000);

	it('notify is idempotent: the same commit again changes nothing', async () => {
		const again = await notifyCommit(systemActor, { commit: good.backend!, changed_roles: ['backend'] });
		expect(again.roles).toEqual([{ role: 'backend', new_commit: false, nodes_outdated: 0 }]);
		expect((await countByStatus()).UP_TO_DATE).toBe(HOSTS);
	});

	it('a host whose health check fails goes back to its previous commit and is FAILED with the reason; the rest update', async () => {
		const bad = bed.hosts[3]!;
		const next = await bed.addCommit('frontend', breakable('fe-1'));
		await breakOn(bad, 'fe-1');
		await notifyCommit(systemActor, { commit: next, changed_roles: ['frontend'] });
		const run = await updateAndWait({ roles: ['frontend'] });
		// A run ends succeeded only when every task did.
		expect(run.state).toBe('failed');
		expect(run.counts).toMatchObject({ total: HOSTS, succeeded: HOSTS - 1, rolled_back: 1 });
		const task = run.tasks.find((t) => t.nodeName === bad.name)!;
		expect(task.state).toBe('rolled_back');
		expect(task.error).toMatch(/verify: frontend is unhealthy/);
		expect(task.steps.filter((s) => s.phase !== 'do').map((s) => `${s.phase}:${s.name}:${s.state}`)).toEqual([
			'undo:switch:succeeded',
			'verify:verify:succeeded'
		]);
		// The rollback's log shows each of its parts, in order: back on the old commit, install, restart, health.
		const log = await logOf(task.id);
		const rollback = log.slice(log.findIndex((l) => l.startsWith('switch: frontend: back on')));
		expect(rollback).toEqual([
			`switch: frontend: back on ${good.frontend!.slice(0, 12)}`,
			expect.stringMatching(/^switch: installed frontend /),
			'switch: frontend: restarted (systemctl restart frontend.service)',
			'verify: frontend: healthy after the rollback (sh healthcheck.sh)'
		]);
		// On the host itself: back on the commit it had; the others run the new one.
		expect(await bed.checkedOutCommit(bad, 'frontend')).toBe(good.frontend);
		expect(await bed.checkedOutCommit(bad, 'backend')).toBe(good.backend);
		for (const host of bed.hosts.filter((h) => h !== bad))
			expect(await bed.checkedOutCommit(host, 'frontend')).toBe(next);
		expect(await statusOf(idOf.get(bad.name)!)).toBe('FAILED');
		const [versions] = [...(await versionsFor([{ id: idOf.get(bad.name)!, roles: ['frontend'] }])).values()];
		expect(versions![0]).toMatchObject({ role: 'frontend', commit: good.frontend, failedCommit: next });
		expect(versions![0]!.lastError).toMatch(/Rolled back: verify: frontend is unhealthy/);
		expect((await countByStatus()).UP_TO_DATE).toBe(HOSTS - 1);
		good.frontend = next;
	}, 180_000);

	it('a dirty tree is skipped with its reason and left as it was', async () => {
		const dirty = bed.hosts[5]!;
		await writeFile(join(dirty.root, 'opt/backend', 'local-hack.txt'), 'edited by hand\n');
		const next = await bed.addCommit('backend');
		await notifyCommit(systemActor, { commit: next, changed_roles: ['backend'] });
		const run = await updateAndWait({ roles: ['backend'] });
		const task = run.tasks.find((t) => t.nodeName === dirty.name)!;
		expect(task.state).toBe('skipped');
		expect(task.error).toMatch(/backend: \/opt\/backend has 1 uncommitted change \(dirty tree\); not touching it/);
		expect(await bed.checkedOutCommit(dirty, 'backend')).toBe(good.backend);
		expect(await statusOf(idOf.get(dirty.name)!)).toBe('OUTDATED');
		// Every other host moves, the one still FAILED for frontend included: that failure is another role's.
		expect(run.counts).toMatchObject({ total: HOSTS, succeeded: HOSTS - 1, skipped: 1 });
		keptByDirty = good.backend!;
		good.backend = next;
	}, 180_000);

	it('a control-plane failure aborts the run: the control plane goes first, and nothing else is touched', async () => {
		const cp = bed.hosts[0]!;
		await db()
			.update(nodes)
			.set({ controlPlane: true })
			.where(eq(nodes.id, idOf.get(cp.name)!));
		const next = await bed.addCommit('backend', breakable('be-1'));
		await breakOn(cp, 'be-1');
		await notifyCommit(systemActor, { commit: next, changed_roles: ['backend'] });
		const plan = await buildPlan({ roles: ['backend'] });
		expect(plan.nodes[0]).toMatchObject({ name: cp.name, phase: 0, control_plane: true });
		expect(plan.phases).toEqual([
			{ phase: 0, label: 'Control plane first', nodes: 1, critical: true },
			{ phase: 1, label: 'Fleet', nodes: HOSTS - 1, critical: false }
		]);
		const run = await updateAndWait({ roles: ['backend'] });
		expect(run.state).toBe('failed');
		expect(run.reason).toMatch(/control|phase/i);
		expect(run.tasks.find((t) => t.nodeName === cp.name)!.state).toBe('rolled_back');
		expect(run.counts).toMatchObject({ total: HOSTS, rolled_back: 1, skipped: HOSTS - 1, succeeded: 0 });
		// Nobody moved: every host is on the last good commit, but the dirty one, still on the commit it kept.
		expect(keptByDirty).not.toBe(good.backend);
		for (const host of bed.hosts) {
			const expected = host === bed.hosts[5] ? keptByDirty : good.backend;
			expect(await bed.checkedOutCommit(host, 'backend'), host.name).toBe(expected);
		}
		expect(await bed.checkedOutCommit(cp, 'backend')).toBe(good.backend);
		await db()
			.update(nodes)
			.set({ controlPlane: false })
			.where(eq(nodes.id, idOf.get(cp.name)!));
	}, 180_000);

	it('push: the console uploads its checkout as releases/<commit> and switches `current`; a failure switches it back', async () => {
		const trio = bed.hosts.slice(10, 13);
		await createRole(
			systemActor,
			createRoleSchema.parse({
				name: 'static',
				method: 'push',
				path: '/opt/static',
				// The console's own checkout of the role: here the testbed's working clone of the frontend app.
				source_repo: join(bed.dir, 'origins', 'frontend.work'),
				units: ['static.service'],
				health: { type: 'command', command: ['sh', 'healthcheck.sh'] },
				health_timeout_seconds: 3
			})
		);
		await db()
			.update(nodes)
			.set({ roles: ['backend', 'frontend', 'static'] })
			.where(
				inArray(
					nodes.id,
					trio.map((h) => idOf.get(h.name)!)
				)
			);
		const first = good.frontend!;
		await notifyCommit(systemActor, { commit: first, changed_roles: ['static'] });
		const run = await updateAndWait({ roles: ['static'] });
		expect(run.state).toBe('succeeded');
		expect(run.counts).toMatchObject({ total: 3, succeeded: 3 });
		for (const host of trio) {
			expect(await readlink(join(host.root, 'opt/static/current'))).toBe(`releases/${first}`);
		}

		const second = await bed.addCommit('frontend', breakable('static-1'));
		await breakOn(trio[1]!, 'static-1');
		await notifyCommit(systemActor, { commit: second, changed_roles: ['static'] });
		const again = await updateAndWait({ roles: ['static'] });
		expect(again.counts).toMatchObject({ total: 3, succeeded: 2, rolled_back: 1 });
		expect(again.tasks.find((t) => t.nodeName === trio[1]!.name)!.state).toBe('rolled_back');
		expect(await readlink(join(trio[1]!.root, 'opt/static/current'))).toBe(`releases/${first}`);
		for (const host of [trio[0]!, trio[2]!]) {
			expect(await readlink(join(host.root, 'opt/static/current'))).toBe(`releases/${second}`);
		}
	}, 180_000);

	it('the health sweep records what each node really runs, its health, and UNREACHABLE', async () => {
		const [handEdited, sick, down] = [bed.hosts[7]!, bed.hosts[8]!, bed.hosts[9]!];
		// Someone deployed by hand on one host: back to an older backend commit.
		const older = (await bed.originCommits('backend'))[2]!;
		await git(['-C', join(handEdited.root, 'opt/backend'), 'checkout', '--quiet', '--detach', older]);
		await bed.setFault(sick, 'fail-health');
		await db()
			.update(codeRoles)
			.set({ health: { type: 'units' } })
			.where(eq(codeRoles.name, 'backend'));
		await bed.stopHost(down);
		try {
			const result = await runHealthSweep(10);
			expect(result).toMatchObject({ checked: HOSTS, reachable: HOSTS - 1, unreachable: 1, skipped_busy: 0 });
			expect(result.drifted_roles).toBeGreaterThanOrEqual(1);
			expect(await statusOf(idOf.get(down.name)!)).toBe('UNREACHABLE');
			expect(await statusOf(idOf.get(handEdited.name)!)).toBe('OUTDATED');
			const [edited] = [...(await versionsFor([{ id: idOf.get(handEdited.name)!, roles: ['backend'] }])).values()];
			expect(edited![0]).toMatchObject({ commit: older, behind: true });
			const [row] = await db()
				.select()
				.from(nodeCodeVersions)
				.where(and(eq(nodeCodeVersions.nodeId, idOf.get(sick.name)!), eq(nodeCodeVersions.role, 'backend')));
			expect(row).toMatchObject({ healthy: false });
			expect(row!.healthError).toMatch(/systemctl is-active backend.service failed/);
			const [seen] = await db()
				.select()
				.from(nodes)
				.where(eq(nodes.id, idOf.get(handEdited.name)!));
			expect(Date.now() - seen!.lastSeenAt!.getTime()).toBeLessThan(60_000);
		} finally {
			await bed.clearFaults(sick);
			await bed.startHost(down);
			await db()
				.update(codeRoles)
				.set({ health: { type: 'command', command: ['sh', 'healthcheck.sh'] } })
				.where(eq(codeRoles.name, 'backend'));
		}
	}, 120_000);

	it('auto-update updates a role on its own, and turns itself off with the reason after too many failures', async () => {
		await db()
			.update(codeRoles)
			.set({ autoUpdate: true, autoUpdateMaxFailuresPerDay: 1, autoUpdateIntervalMinutes: 1 })
			.where(eq(codeRoles.name, 'frontend'));
		const next = await bed.addCommit('frontend', breakable('auto-1'));
		await breakOn(bed.hosts[12]!, 'auto-1');
		await notifyCommit(systemActor, { commit: next, changed_roles: ['frontend'], branch: 'main' });
		const first = await runAutoUpdates();
		expect(first.started).toHaveLength(1);
		expect(first.started[0]).toMatchObject({ role: 'frontend' });
		const run = await waitForRun(first.started[0]!.run_id, ['succeeded', 'failed'], 120_000);
		expect(run.createdBy).toBe('auto-update');
		expect(run.tasks.find((t) => t.nodeName === bed.hosts[12]!.name)!.state).toBe('rolled_back');
		expect(await bed.checkedOutCommit(bed.hosts[0]!, 'frontend')).toBe(next);
		// Not due again within its interval, and now over its failure limit: it turns itself off.
		const second = await runAutoUpdates();
		expect(second).toEqual({ started: [], disabled: ['frontend'] });
		const [role] = await db().select().from(codeRoles).where(eq(codeRoles.name, 'frontend'));
		expect(role).toMatchObject({ autoUpdate: false });
		expect(role!.autoUpdateDisabledReason).toMatch(/Turned off after 1 failed node update in 24 hours/);
		expect(await runAutoUpdates()).toEqual({ started: [], disabled: [] });
	}, 180_000);
});
