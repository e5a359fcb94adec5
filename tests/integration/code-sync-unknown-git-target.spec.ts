import { randomBytes } from 'node:crypto';
import { and, asc, desc, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRoleSchema } from '../../src/lib/schemas/code-sync';
import { codePlanSchema } from '../../src/lib/schemas/responses';
import { systemActor } from '../../src/lib/server/audit';
import { notifyCommit } from '../../src/lib/server/codesync/notify';
import { triggerUpdate } from '../../src/lib/server/codesync/plan';
import { createRole } from '../../src/lib/server/codesync/roles';
import { planView } from '../../src/lib/server/codesync/update-forms';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { events, nodes, roleCommitChecks } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { POST as trigger } from '../../src/routes/api/updates/trigger/+server';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * A `git` role's target that a node's fetched repository does not hold is flagged by the next plan
 * (docs/code-sync.md, "Update All"): the fetch of a Code Sync task looks for the commit in the same command and
 * records what it found. Two real sshd hosts (127.0.1.251–252) cloned from a real bare origin.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;

beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 251, roles: ['backend'] });
	pg = await freshPostgres('flotilla_unknown_git_target');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	await registerTestbedNodes(bed, () => ({ roles: ['backend'] }));
	await createRole(
		systemActor,
		createRoleSchema.parse({
			name: 'backend',
			path: '/opt/backend',
			units: ['backend.service'],
			install_command: ['sh', 'install.sh'],
			health: { type: 'command', command: ['sh', 'app.sh'] }
		})
	);
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
});

/** The dry run through `POST /api/updates/trigger`, as a client sees it. */
async function planViaApi() {
	const url = new URL('http://console/api/updates/trigger');
	const request = new Request(url, {
		method: 'POST',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify({ dry_run: true })
	});
	const res = await trigger({ request, url, params: {}, locals: {}, getClientAddress: () => '127.0.0.1' } as never);
	expect(res.status).toBe(200);
	return codePlanSchema.parse(((await res.json()) as { plan: unknown }).plan);
}

async function checks() {
	return db()
		.select({ node: nodes.name, commit: roleCommitChecks.commit, found: roleCommitChecks.found })
		.from(roleCommitChecks)
		.innerJoin(nodes, eq(nodes.id, roleCommitChecks.nodeId))
		.orderBy(asc(nodes.name));
}

async function update() {
	const { runId } = await triggerUpdate(systemActor, { dry_run: false });
	return waitForRun(runId!, ['succeeded', 'failed'], 120_000);
}

describe('unknown git role targets', () => {
	it('an update that cannot check the commit out flags it in the next plan, naming the node; a real commit clears it', async () => {
		const names = bed.hosts.map((h) => h.name).sort();
		const bogus = 'c0ffee'.padEnd(40, '1');
		await notifyCommit(systemActor, { commit: bogus, changed_roles: ['backend'] });
		// Nobody has looked for it yet: the console cannot ask the nodes' remote, so the plan has no warning.
		expect((await planViaApi()).unknown_targets).toEqual([]);

		const failed = await update();
		expect(failed.state).toBe('failed');
		for (const task of failed.tasks) {
			// Nothing was switched, so the undo has nothing to put back: the task ends rolled back.
			expect(task.state).toBe('rolled_back');
			expect(task.error).toContain(`reference is not a tree: ${bogus}`);
		}
		// The fetch said so first, in the log, then the checkout failed.
		const said = await db()
			.select({ data: events.data })
			.from(events)
			.where(and(eq(events.taskId, failed.tasks[0]!.id), eq(events.type, 'task.output')));
		const lines = said.flatMap((r) => (r.data.lines as { t: string }[]).map((l) => `${String(r.data.step)}: ${l.t}`));
		expect(lines).toContain(`fetch: backend: ${bogus} is not in the fetched repository`);
		expect(await checks()).toEqual(names.map((node) => ({ node, commit: bogus, found: false })));

		const flagged = await planViaApi();
		expect(flagged.unknown_targets).toHaveLength(1);
		const [unknown] = flagged.unknown_targets;
		expect(unknown).toMatchObject({ role: 'backend', commit: bogus });
		// It names the node that looked last and when, to the second, so asking again says the same.
		const [latest] = await db()
			.select({ node: nodes.name, checkedAt: roleCommitChecks.checkedAt })
			.from(roleCommitChecks)
			.innerJoin(nodes, eq(nodes.id, roleCommitChecks.nodeId))
			.orderBy(desc(roleCommitChecks.checkedAt))
			.limit(1);
		const at = latest!.checkedAt.toISOString().slice(0, 19);
		expect(unknown!.reason).toBe(`not in ${latest!.node}'s fetched repository /opt/backend (checked ${at}Z)`);
		// The plan dialog's view warns of it before anyone confirms.
		const view = planView(await (await triggerUpdate(systemActor, { dry_run: true })).plan);
		expect(view.roles.map((r) => [r.role, r.unknown])).toEqual([['backend', unknown!.reason]]);
		expect(view.warnings[0]).toMatch(new RegExp(`^backend: commit ${bogus.slice(0, 12)} is unknown \\(not in host`));

		// The real next commit: nothing known against it, and its update records that both nodes fetched it.
		const real = await bed.addCommit('backend');
		await notifyCommit(systemActor, { commit: real, changed_roles: ['backend'] });
		expect((await planViaApi()).unknown_targets).toEqual([]);
		const succeeded = await update();
		expect(succeeded.state).toBe('succeeded');
		for (const host of bed.hosts) expect(await bed.checkedOutCommit(host, 'backend')).toBe(real);
		expect(await checks()).toEqual(names.map((node) => ({ node, commit: real, found: true })));
	}, 240_000);
});
