import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { access, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { badReleaseFor } from '../../src/lib/server/appliances/fallbacks';
import { useImageStore } from '../../src/lib/server/appliances/images';
import { startPush } from '../../src/lib/server/appliances/runs';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { applianceUpdates, auditLog, events, tasks, type Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { useReleaseKeys } from '../../src/lib/server/releases/keys';
import { keyIdOf } from '../../src/lib/server/releases/signing';
import { runOutput, signedImageRelease } from '../support/appliances';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { registerTestbedNodes, sshAsRoot } from '../support/testbed-nodes';
import { startTestbed, type Testbed } from '../testbed/testbed';

/**
 * A fallback is recorded once per update, whoever sees it (docs/appliances.md, "Fallbacks"): here the task
 * that found its appliance back on the good slot loses its lease right after recording the fallback, before its
 * step ended (a console whose lease renewals stalled on a busy machine), so the memo on record does not say so,
 * and the task's recovery finds the same fallback again. One real appliance on 127.0.1.88.
 */

let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let workDir: string;
let signingKey: KeyObject;
let node: Node;

const exists = (path: string) =>
	access(path).then(
		() => true,
		() => false
	);

beforeAll(async () => {
	workDir = await mkdtemp(join(tmpdir(), 'flotilla-fallback-once-'));
	useImageStore(join(workDir, 'images'));
	bed = await startTestbed({ hosts: 1, firstHost: 88 });
	pg = await freshPostgres('flotilla_fallback_once');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	signingKey = generateKeyPairSync('ed25519').privateKey;
	const pub = createPublicKey(signingKey);
	useReleaseKeys({ ed25519: [{ id: keyIdOf(pub), key: pub }] });
	registerDomains();
	const h = bed.hosts[0]!;
	await mkdir(join(h.root, 'etc/flotilla/release-keys'), { recursive: true });
	await writeFile(
		join(h.root, 'etc/flotilla/release-keys/release.pem'),
		pub.export({ format: 'pem', type: 'spki' }).toString()
	);
	await sshAsRoot(bed, h, 'systemctl start appliance');
	node = (await registerTestbedNodes(bed, () => ({ kind: 'appliance' as const })))[0]!;
	// A lease long enough that a busy machine's stalled renewals do not lose the task on their own: this test
	// takes it away itself, at the moment it means to.
	await startEngine({ concurrency: 2, leaseMs: 15_000, sweepMs: 500, shutdownGraceMs: 0 });
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

describe('a boot-loop fallback found by a task that then loses its lease', () => {
	it('is recorded and audited once, though the recovered task finds it again', async () => {
		const h = bed.hosts[0]!;
		const at = (path: string) => join(h.root, path);
		const bootHook = at('opt/flotilla-testbed/boot');
		const goOn = at('etc/flotilla-testbed/go-on');
		// First on the appliance's PATH: holds the first `flotilla-slot revert` once `hold-revert` exists (the
		// undo's, right after it recorded the fallback) until the command is killed, then is the real helper.
		const wrapper = at('opt/flotilla-testbed/bin/flotilla-slot');
		const holdRevert = at('etc/flotilla-testbed/hold-revert');
		const revertHeld = at('etc/flotilla-testbed/revert-held');
		const release = at('etc/flotilla-testbed/release-revert');
		const before = await bed.slotState(h);
		const intended = before.active === 'a' ? 'b' : 'a';
		// Every boot of the new slot fails: the appliance boots it 3 times, then its good slot, whose boot the hook
		// holds until the console gave up waiting.
		await bed.setFault(h, 'fail-boot', intended);
		await writeFile(bootHook, '#!/bin/sh\nwhile [ ! -e /etc/flotilla-testbed/go-on ]; do sleep 0.2; done\n', {
			mode: 0o755
		});
		await writeFile(
			wrapper,
			[
				'#!/bin/sh',
				'if [ "$1" = revert ] && [ -e /etc/flotilla-testbed/hold-revert ] && [ ! -e /etc/flotilla-testbed/revert-held ]; then',
				'\ttouch /etc/flotilla-testbed/revert-held',
				'\twhile [ ! -e /etc/flotilla-testbed/release-revert ]; do sleep 0.2; done',
				'fi',
				'exec /opt/flotilla/bin/flotilla-slot "$@"',
				''
			].join('\n'),
			{ mode: 0o755 }
		);
		try {
			const image = await signedImageRelease(signingKey, '4.0.0');
			const pushed = await startPush(systemActor, {
				image_id: image.id,
				nodes: [h.name],
				window: 'ignore',
				reboot_timeout_seconds: 30
			});
			await waitFor(
				'the console giving up waiting',
				async () => /did not answer within 30 s/.test(await runOutput(pushed.id)),
				120_000
			);
			await writeFile(holdRevert, '');
			await writeFile(goOn, '');
			// The undo found the appliance on its good slot, recorded the fallback, and is reverting.
			await waitFor('the undo reverting', () => exists(revertHeld), 120_000).catch(async (err: Error) => {
				throw new Error(`${err.message}; the task's log:\n${await runOutput(pushed.id)}`);
			});
			const audited = () =>
				db()
					.select({ id: auditLog.id })
					.from(auditLog)
					.where(and(eq(auditLog.action, 'appliance.fallback'), eq(auditLog.targetId, node.id)));
			expect(await audited()).toHaveLength(1);

			// Another console takes the task over and dies at once: this one loses it mid-step, then recovers it.
			await db()
				.update(tasks)
				.set({ leaseOwner: 'another-console', leaseExpiresAt: sql`now()` as unknown as Date })
				.where(eq(tasks.runId, pushed.id));
			const ended = await waitForRun(pushed.id, ['succeeded', 'failed'], 180_000);
			const log = await runOutput(pushed.id);
			expect(log).toMatch(/This console lost the task to another instance/);
			expect(log).toMatch(/Recovering after the console stopped \(attempt 2\)/);
			expect(log).toMatch(/A rollback was under way: finishing it/);
			const run = await getRun(ended.id);
			expect(run.tasks[0]).toMatchObject({ state: 'rolled_back', attempt: 2 });

			// Recorded once: one audit row, one event, and the update says it fell back.
			expect(await audited()).toHaveLength(1);
			const announced = await db()
				.select({ id: events.id })
				.from(events)
				.where(and(eq(events.runId, pushed.id), eq(events.type, 'appliance.fallback')));
			expect(announced).toHaveLength(1);
			const why = `boot: slot ${intended} was booted 3 times without passing the health gate; fell back to slot ${before.good}`;
			const [row] = await db().select().from(applianceUpdates).where(eq(applianceUpdates.runId, pushed.id));
			expect(row).toMatchObject({
				state: 'rolled_back',
				toSlot: intended,
				fallback: why,
				error: `the appliance fell back to slot ${before.good} on its own: ${why}`
			});
			expect(await badReleaseFor(image.releaseId, node)).toMatchObject({ nodeName: h.name, reason: why });
			expect(await bed.slotState(h)).toMatchObject({
				active: before.good,
				next: before.good,
				good: before.good,
				tries: 0
			});
		} finally {
			await writeFile(release, '');
			for (const f of [bootHook, wrapper, holdRevert, revertHeld, release, goOn]) await rm(f, { force: true });
			await bed.clearFaults(h);
		}
	}, 420_000);
});
