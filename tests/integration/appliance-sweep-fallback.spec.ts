import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRolloutSchema } from '../../src/lib/schemas/releases';
import { badReleaseFor } from '../../src/lib/server/appliances/fallbacks';
import { useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { applianceUpdates, auditLog, nodes, type Node, type Rollout } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { runHealthSweep } from '../../src/lib/server/fleet/sweep';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { getRelease } from '../../src/lib/server/releases/releases';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { advanceRollout, driveRollouts, resumeRollout } from '../../src/lib/server/rollouts/driver';
import { presentRolloutDetail } from '../../src/lib/server/rollouts/present';
import { createRollout, getRollout, nodesOfRollout } from '../../src/lib/server/rollouts/rollouts';
import { runOutput, signedImageRelease } from '../support/appliances';
import { sshAsRoot } from '../support/testbed-nodes';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * What the console learns late (docs/appliances.md, "The A/B flow" and "Fallbacks"): an appliance whose update
 * succeeded goes back to its previous slot by its own watchdog, found by the health sweep, which must count like
 * a failed gate (the update rolled_back with the reason, a failure of its rollout stage, the release marked bad
 * for its hardware, the rollout paused); and an appliance that is not back within the reboot deadline, reverted
 * when it answers again. Five real appliances on 127.0.1.83–87.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let workDir: string;
let signingKey: KeyObject;
const nodeOf = new Map<string, Node>();

async function driveUntil(id: string, states: Rollout['state'][], timeoutMs = 180_000): Promise<Rollout> {
	return waitFor(
		`rollout in ${states.join('/')}`,
		async () => {
			await driveRollouts();
			const r = await getRollout(id);
			return states.includes(r.state) ? r : null;
		},
		timeoutMs
	);
}

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-sweep-fallback-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 5, firstHost: 83 });
	pg = await freshPostgres('flotilla_sweep_fallback');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	const pem = pub.export({ format: 'pem', type: 'spki' }).toString();
	for (const h of bed.hosts) {
		await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
		await writeFile(join(h.root, 'etc/flotilla/release-keys/release.pem'), pem);
		await sshAsRoot(bed, h, 'systemctl start appliance');
	}
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				kind: 'appliance' as const,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning();
	for (const r of rows) nodeOf.set(r.name, r);
	// Nothing here restarts the console or relies on recovery: a lease long enough that a busy machine's stalled
	// renewals (CI: 2 CPUs) do not hand a task to recovery midway.
	await startEngine({ concurrency: 5, leaseMs: 15_000, sweepMs: 500, shutdownGraceMs: 0 });
}, 180_000);

afterAll(async () => {
	await stopEngine();
	useReleaseKeys(undefined);
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
	await bed?.stop();
	useImageStore(undefined);
	if (workDir) await rm(workDir, { recursive: true, force: true });
});

describe('a fallback found by the health sweep after the update succeeded', () => {
	it('counts like a failed gate: rolled_back with why, a failure of its stage, the release bad for the hardware, the rollout paused', async () => {
		const image = await signedImageRelease(signingKey, '2.0.0');
		const input = createRolloutSchema.parse({
			release_id: image.releaseId,
			target: { nodes: bed.hosts.map((h) => h.name) },
			strategy: 'canary',
			stages: [
				{ percent: 20, bake_seconds: 0 },
				{ percent: 100, bake_seconds: 0 }
			],
			failure_threshold_percent: 10,
			min_finished_nodes: 1,
			require_approval: true,
			concurrency: 5
		});
		const { preview } = await createRollout(systemActor, { ...input, dry_run: true });
		expect(preview.stages.map((s) => s.nodes.length)).toEqual([1, 4]);
		// The first stage's appliance and two of the second's are one kind of hardware, the other two another.
		const first = bed.hosts.find((h) => h.name === preview.stages[0]!.nodes[0]!.name)!;
		const rest = preview.stages[1]!.nodes.map((n) => bed.hosts.find((h) => h.name === n.name)!);
		const sameHardware = [first, ...rest.slice(0, 2)];
		for (const h of bed.hosts) {
			const labels = { hardware: sameHardware.includes(h) ? 'x1' : 'x2' };
			await db()
				.update(nodes)
				.set({ labels })
				.where(eq(nodes.id, nodeOf.get(h.name)!.id));
			nodeOf.set(h.name, { ...nodeOf.get(h.name)!, labels });
		}
		const { rollout } = await createRollout(systemActor, { ...input, id: preview.id });
		const waiting = await driveUntil(rollout!.id, ['waiting_approval', 'paused', 'completed']);
		expect(waiting.state).toBe('waiting_approval');
		expect(await bed.slotState(first)).toMatchObject({ active: 'b', next: 'b', good: 'b' });
		const [updated] = await nodesOfRollout(rollout!.id);
		expect(updated).toMatchObject({ nodeName: first.name, state: 'succeeded' });

		// The appliance's watchdog finds the console unreachable after the update and goes back to slot a.
		const before = await bed.slotState(first);
		await writeFile(join(first.root, 'etc/flotilla/watchdog.conf'), 'console_probe=false\nunreachable_seconds=0\n');
		const watchdog = await sshAsRoot(bed, first, 'flotilla-slot watchdog');
		expect(watchdog.stdout).toMatch(/back to slot a, rebooting/);
		await waitFor(
			'the appliance back up on slot a',
			async () => {
				const s = await bed.slotState(first).catch(() => null);
				if (!s || s.boots <= before.boots || s.active !== 'a') return null;
				// Its sshd answers again.
				return (await sshAsRoot(bed, first, 'true').catch(() => null))?.exitCode === 0;
			},
			60_000
		);
		// The console learns it from its next health sweep: once, however often it sweeps.
		const swept = await runHealthSweep(5);
		expect(swept).toMatchObject({ reachable: 5, appliances_fallen_back: 1, appliance_fallbacks_recorded: 1 });
		expect(await runHealthSweep(5)).toMatchObject({ appliances_fallen_back: 1, appliance_fallbacks_recorded: 0 });

		const [row] = await db()
			.select()
			.from(applianceUpdates)
			.where(eq(applianceUpdates.nodeId, nodeOf.get(first.name)!.id));
		expect(row).toMatchObject({ state: 'rolled_back', fromSlot: 'a', toSlot: 'b' });
		expect(row!.fallback).toMatch(
			/^watchdog: the console was unreachable for \d+s after the update; went back to slot a$/
		);
		expect(row!.error).toMatch(/after the update succeeded, the appliance went back to slot a on its own: watchdog/);
		const mark = await badReleaseFor(image.releaseId, nodeOf.get(first.name)!);
		expect(mark).toMatchObject({ hardware: 'x1', nodeName: first.name });
		const audits = await db()
			.select({ action: auditLog.action })
			.from(auditLog)
			.where(and(eq(auditLog.action, 'appliance.fallback'), eq(auditLog.targetId, nodeOf.get(first.name)!.id)));
		expect(audits).toHaveLength(1);

		// The rollout pauses, and the stage counts the appliance as a failure, not a success.
		const paused = await getRollout(rollout!.id);
		expect(paused.state).toBe('paused');
		expect(paused.reason).toMatch(
			new RegExp(
				`${first.name} fell back to its good slot on its own \\(watchdog: .*\\); the release is marked bad for hardware x1`
			)
		);
		const detail = await presentRolloutDetail(
			paused,
			await getRelease(image.releaseId),
			await nodesOfRollout(rollout!.id)
		);
		expect(detail.stages[0]).toMatchObject({ counts: { succeeded: 0, fell_back: 1 }, failure_rate_percent: 100 });
		expect(detail.nodes.find((n) => n.node === first.name)).toMatchObject({ state: 'fell_back' });

		// Resumed, the failure is acknowledged; the next stage does not offer the release to that hardware again.
		const resumed = await resumeRollout(systemActor, rollout!.id);
		expect(resumed.stages[0]!.acknowledgedFailures).toBe(1);
		expect(resumed.state).toBe('waiting_approval');
		await advanceRollout(systemActor, rollout!.id);
		const done = await driveUntil(rollout!.id, ['completed', 'paused', 'failed']);
		expect(done.state).toBe('completed');
		expect(done.reason).toMatch(/1 node\(s\) failed/);
		const rows = await nodesOfRollout(rollout!.id);
		for (const r of rows.filter((x) => x.stage === 1)) {
			const h = bed.hosts.find((x) => x.name === r.nodeName)!;
			if (sameHardware.includes(h)) {
				expect(r.state).toBe('skipped');
				expect(await bed.slotState(h)).toMatchObject({ active: 'a', good: 'a' });
			} else {
				expect(r.state).toBe('succeeded');
				expect(await bed.slotState(h)).toMatchObject({ active: 'b', good: 'b' });
			}
		}
	}, 420_000);
});

describe('an appliance not back within the reboot deadline', () => {
	const h = () => bed.hosts[4]!;
	const hook = () => join(h().root, 'opt/flotilla-testbed/boot');
	const goOn = () => join(h().root, 'etc/flotilla-testbed/go-on');

	/**
	 * Pushes `version` with a 30 s reboot deadline (room for a busy machine's sshd once the boot goes on) while
	 * the appliance's boot waits (a boot hook) until the console
	 * gave up waiting; then lets it finish booting. Resolves to the run once it ended.
	 */
	async function pushPastTheDeadline(version: string) {
		await rm(goOn(), { force: true });
		await writeFile(hook(), '#!/bin/sh\nwhile [ ! -e /etc/flotilla-testbed/go-on ]; do sleep 0.2; done\n', {
			mode: 0o755
		});
		try {
			const image = await signedImageRelease(signingKey, version);
			const pushed = await startPush(systemActor, {
				image_id: image.id,
				nodes: [h().name],
				window: 'ignore',
				reboot_timeout_seconds: 30
			});
			await waitFor(
				'the console giving up waiting',
				async () => /did not answer within 30 s/.test(await runOutput(pushed.id)),
				120_000
			);
			await writeFile(goOn(), '');
			await waitForRun(pushed.id, ['succeeded', 'failed'], 120_000);
			return { image, run: await getRun(pushed.id), log: await runOutput(pushed.id) };
		} finally {
			await rm(hook(), { force: true });
		}
	}

	async function updateOf(runId: string) {
		const [row] = await db().select().from(applianceUpdates).where(eq(applianceUpdates.runId, runId));
		return row!;
	}

	it('is reverted to its good slot when it answers again, rebooted there, and recorded rolled_back', async () => {
		const before = await bed.slotState(h());
		const intended = before.active === 'a' ? 'b' : 'a';
		const { image, run, log } = await pushPastTheDeadline('3.0.0');
		expect(run.tasks[0]).toMatchObject({ state: 'rolled_back' });
		const row = await updateOf(run.id);
		expect(row).toMatchObject({ state: 'rolled_back', fallback: null, toSlot: intended });
		expect(row.error).toMatch(/did not answer within 30 s/);
		// It came back on the new slot, not committed: the console sent it back to the good one and rebooted it.
		expect(log).toMatch(new RegExp(`slot ${intended} is not committed: back to slot ${before.good}`));
		expect(log).toMatch(new RegExp(`back on the good slot ${before.good}`));
		const after = await bed.slotState(h());
		expect(after).toMatchObject({ active: before.good, next: before.good, good: before.good, tries: 0 });
		expect(after.boots).toBe(before.boots + 2);
		// Not a fallback: the appliance did not go back on its own.
		expect(await badReleaseFor(image.releaseId, nodeOf.get(h().name)!)).toBeNull();
	}, 240_000);

	it('one that went back to its good slot on its own meanwhile (a boot loop) is recorded as a fallback, not a timeout', async () => {
		const before = await bed.slotState(h());
		const intended = before.active === 'a' ? 'b' : 'a';
		// Every boot of the new slot fails: the appliance's own logic boots it 3 times, then its good slot, whose
		// boot the hook holds until the console gave up waiting.
		await bed.setFault(h(), 'fail-boot', intended);
		try {
			const { image, run, log } = await pushPastTheDeadline('3.1.0');
			expect(run.tasks[0]!.state).toBe('rolled_back');
			const row = await updateOf(run.id);
			const why = `slot ${intended} was booted 3 times without passing the health gate; fell back to slot ${before.good}`;
			expect(row).toMatchObject({ state: 'rolled_back', toSlot: intended });
			expect(row.fallback).toBe(`boot: ${why}`);
			expect(row.error).toBe(`the appliance fell back to slot ${before.good} on its own: boot: ${why}`);
			// The console found it on its good slot already: no second reboot.
			expect(log).toMatch(new RegExp(`the appliance is on its good slot ${before.good}`));
			expect(await badReleaseFor(image.releaseId, nodeOf.get(h().name)!)).toMatchObject({ nodeName: h().name });
			// This release's: the first test's canary (a different shuffle every rollout) may be this appliance too.
			const audits = await db()
				.select({ action: auditLog.action })
				.from(auditLog)
				.where(
					and(
						eq(auditLog.action, 'appliance.fallback'),
						eq(auditLog.targetId, nodeOf.get(h().name)!.id),
						sql`${auditLog.details}->>'release_id' = ${image.releaseId}`
					)
				);
			expect(audits).toHaveLength(1);
			const after = await bed.slotState(h());
			expect(after).toMatchObject({ active: before.good, next: before.good, good: before.good, tries: 0 });
			// Three failed boots of the new slot, then the good one.
			expect(after.boots).toBe(before.boots + 4);
		} finally {
			await bed.clearFaults(h());
		}
	}, 240_000);
});
