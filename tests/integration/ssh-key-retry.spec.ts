import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateKeysSchema } from '../../src/lib/schemas/ssh-keys';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog, credentials, keyRotations, nodes } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential, unsealCredential } from '../../src/lib/server/keys/credentials';
import { driveKeyRotation, driveKeyRotations, retryFailedNodes } from '../../src/lib/server/keys/driver';
import { getKeyRotation, startKeyRotation } from '../../src/lib/server/keys/rotation';
import { freshPostgres } from '../support/databases';
import { waitFor } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * A node that fails K5 or K6 keeps a key that works, and an admin's retry finishes it (docs/ssh-key-rotation.md,
 * "Trying failed nodes again"), on real sshd hosts (127.0.1.74–76). Which key logs in where is proven by real logins
 * with the openssh client; a key is refused on one host by sshd's RevokedKeys, read at every login.
 */

const run = promisify(execFile);
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let testbedCredential: string;
const names = ['r-0', 'r-1', 'r-2'];
const foreign = (i: number) =>
	`# ops team keys\nfrom="10.0.0.0/8" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhY2t1cC0${i} backup@vault\n\n`;
const keysPath = (h: TestHost) => join(h.root, 'root/.ssh/authorized_keys');
const revokedPath = (h: TestHost) => join(h.root, 'etc/ssh/revoked_keys');

async function keyFile(credentialId: string): Promise<string> {
	const path = join(bed.dir, `key-${credentialId}`);
	await writeFile(path, (await unsealCredential(credentialId)).privateKey, { mode: 0o600 });
	return path;
}

async function publicKeyOf(credentialId: string): Promise<string> {
	return (await db().select().from(credentials).where(eq(credentials.id, credentialId)))[0]!.publicKey;
}

async function logsIn(h: TestHost, keyPath: string): Promise<boolean> {
	try {
		const { stdout } = await run('ssh', [
			...['-i', keyPath, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', 'PasswordAuthentication=no'],
			...['-o', `UserKnownHostsFile=${bed.knownHostsPath}`, '-o', 'StrictHostKeyChecking=yes'],
			...['-o', 'ConnectTimeout=10', '-F', '/dev/null', `root@${h.address}`, 'echo in']
		]);
		return stdout.trim() === 'in';
	} catch {
		return false;
	}
}

/**
 * Turns the rotation one decision at a time until `phase`'s run has ended on every node, and stops there: the
 * next decision would judge it and start the phase after. Nothing else turns the driver in this test.
 */
async function driveUntilEnded(rotationId: string, phase: string): Promise<void> {
	await waitFor(
		`${phase} to end`,
		async () => {
			const [r] = await db().select().from(keyRotations).where(eq(keyRotations.id, rotationId));
			if (r!.state !== 'running') throw new Error(`the rotation ended ${r!.state} before ${phase}: ${r!.abortReason}`);
			if (r!.phase === phase && r!.phaseRunId) {
				const state = (await getRun(r!.phaseRunId)).state;
				return ['succeeded', 'failed', 'cancelled'].includes(state);
			}
			if (!r!.phaseRunId || ['succeeded', 'failed', 'cancelled'].includes((await getRun(r!.phaseRunId)).state)) {
				await driveKeyRotation(rotationId);
			}
			return false;
		},
		120_000
	);
}

async function settle(rotationId: string, until: (state: string) => boolean) {
	return waitFor(
		'the rotation to settle',
		async () => {
			await driveKeyRotations();
			const r = await getKeyRotation(rotationId);
			return until(r.state) ? r : null;
		},
		120_000
	);
}

const consoleLines = async (h: TestHost) =>
	(await readFile(keysPath(h), 'utf8')).split('\n').filter((l) => l.startsWith('ssh-') && !l.includes('backup@vault'));

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 74, roles: [] });
	pg = await freshPostgres('flotilla_key_retry');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	testbedCredential = (await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey })).id;
	await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h, i) => ({
				name: names[i]!,
				host: h.address,
				port: h.port,
				credentialId: testbedCredential,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		);
	for (const [i, h] of bed.hosts.entries()) {
		await writeFile(keysPath(h), `${foreign(i)}${await readFile(keysPath(h), 'utf8')}`);
		// Every host may refuse a key the test names; none is named yet.
		await writeFile(revokedPath(h), '');
		await writeFile(
			join(h.root, 'etc/ssh/sshd_config'),
			`${await readFile(join(h.root, 'etc/ssh/sshd_config'), 'utf8')}RevokedKeys ${revokedPath(h)}\n`
		);
		await bed.stopHost(h);
		await bed.startHost(h);
	}
	await startEngine({ concurrency: 10, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	await pg?.close();
	await bed?.stop();
});

describe('trying nodes that failed K5 or K6 again', () => {
	it('the dry run lists a host that is away as unreachable, and why, beside what the others accept', async () => {
		await bed.stopHost(bed.hosts[2]!);
		try {
			const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names, dry_run: true }));
			if (!('dryRun' in started)) throw new Error('expected a dry run');
			expect(started.dryRun.map((h) => [h.node, h.reachable])).toEqual([
				['r-0', true],
				['r-1', true],
				['r-2', false]
			]);
			expect(started.dryRun[2]!.error).toBeTruthy();
			expect(started.dryRun[2]!.survey).toBeNull();
			expect(started.dryRun[0]!.survey!.consoleKeys.map((k) => k.credential)).toEqual(['testbed']);
		} finally {
			await bed.startHost(bed.hosts[2]!);
		}
	});

	it('a node whose new key stops logging in before K5 keeps its old key; once it is let in again, a retry finishes it', async () => {
		const bad = bed.hosts[1]!;
		const oldKey = bed.clientPrivateKeyPath;
		const oldBlob = (await publicKeyOf(testbedCredential)).split(' ')[1]!;
		const inodeBefore = (await stat(keysPath(bed.hosts[0]!))).ino;
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const id = started.rotationId;
		await driveUntilEnded(id, 'K4');
		// K4 proved the new key everywhere; now r-1 refuses it, so K5 there must not take the old key away.
		const freshId = (await getKeyRotation(id)).newCredentialId!;
		await writeFile(revokedPath(bad), `${await publicKeyOf(freshId)}\n`);
		let r = await settle(id, (s) => s !== 'running');
		expect(r.state, r.abortReason ?? undefined).toBe('completed');
		expect(r.nodes.map((n) => [n.nodeName, n.state, n.reached])).toEqual([
			['r-0', 'done', 'K5'],
			['r-1', 'failed', 'K4'],
			['r-2', 'done', 'K5']
		]);
		expect(r.phases.at(-1)).toMatchObject({
			phase: 'K5',
			state: 'failed',
			problems: [expect.objectContaining({ node: 'r-1', unreachable: false })]
		});
		expect(r.nodes[1]!.error).toContain('the new key does not log in');
		// Each phase began only once the one before had ended on every node.
		const runs = await Promise.all(r.phases.map((p) => getRun(p.runId)));
		for (let i = 1; i < runs.length; i++) {
			const lastEnd = Math.max(...runs[i - 1]!.tasks.map((t) => new Date(t.endedAt!).getTime()));
			const firstStart = Math.min(...runs[i]!.tasks.map((t) => new Date(t.startedAt!).getTime()));
			expect(firstStart, `${r.phases[i]!.phase} after ${r.phases[i - 1]!.phase}`).toBeGreaterThanOrEqual(lastEnd);
		}
		// The file was replaced whole (renamed over), and no temporary file was left beside it.
		expect((await stat(keysPath(bed.hosts[0]!))).ino).not.toBe(inodeBefore);
		expect((await readdir(join(bed.hosts[0]!.root, 'root/.ssh'))).filter((f) => f.includes('flotilla-'))).toEqual([]);
		const [badNode] = await db().select().from(nodes).where(eq(nodes.name, 'r-1'));
		expect(badNode!.credentialId).toBe(testbedCredential);
		const freshKey = await keyFile(freshId);
		const netKey = await keyFile(r.safetyNetCredentialId!);
		// The failed node still lets in the key the console signs in to it with, and the safety net.
		expect(await logsIn(bad, oldKey)).toBe(true);
		expect(await logsIn(bad, netKey)).toBe(true);
		expect(await logsIn(bad, freshKey)).toBe(false);
		for (const h of [bed.hosts[0]!, bed.hosts[2]!]) {
			expect(await logsIn(h, freshKey)).toBe(true);
			expect(await logsIn(h, oldKey)).toBe(false);
		}

		// The cause is fixed; the admin tries the failed node again.
		await writeFile(revokedPath(bad), '');
		const retried = await retryFailedNodes(systemActor, id);
		expect(retried.nodes).toEqual(['r-1']);
		expect((await getKeyRotation(id)).state).toBe('open');
		r = await settle(id, (s) => s === 'completed');
		expect(r.nodes.map((n) => [n.nodeName, n.state, n.reached, n.error])).toEqual(
			names.map((n) => [n, 'done', 'K5', null])
		);
		expect(await logsIn(bad, freshKey)).toBe(true);
		expect(await logsIn(bad, netKey)).toBe(true);
		expect(await logsIn(bad, oldKey)).toBe(false);
		const [after] = await db().select().from(nodes).where(eq(nodes.name, 'r-1'));
		expect(after!.credentialId).toBe(freshId);
		// Every phase ran again on it and added nothing twice; the other lines are where they were.
		const fresh = await publicKeyOf(freshId);
		const net = await publicKeyOf(r.safetyNetCredentialId!);
		expect(await consoleLines(bad)).toEqual([
			`${net} flotilla:safety-net:${r.safetyNetCredentialId}`,
			`${fresh} flotilla:primary:${freshId}`
		]);
		expect((await readFile(keysPath(bad), 'utf8')).startsWith(foreign(1))).toBe(true);
		expect(await readFile(keysPath(bad), 'utf8')).not.toContain(oldBlob);
		const audit = await db()
			.select()
			.from(auditLog)
			.where(and(eq(auditLog.targetId, id), inArray(auditLog.action, ['ssh_keys.retry', 'ssh_keys.catch_up'])));
		expect(audit.map((a) => a.action).sort()).toEqual(['ssh_keys.catch_up', 'ssh_keys.retry']);
		// Nothing is left to try again.
		await expect(retryFailedNodes(systemActor, id)).rejects.toThrow('has no failed node to try again');
	}, 240_000);

	it('a node whose own key fails before K6 keeps the safety net; a retry removes it once the key logs in again', async () => {
		const bad = bed.hosts[2]!;
		const started = await startKeyRotation(
			systemActor,
			rotateKeysSchema.parse({ nodes: names, remove_safety_net: true })
		);
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const id = started.rotationId;
		// While the rotation runs, its failed nodes cannot be tried again yet.
		await expect(retryFailedNodes(systemActor, id)).rejects.toThrow('is still running');
		await driveUntilEnded(id, 'K5');
		const newestId = (await getKeyRotation(id)).newCredentialId!;
		await writeFile(revokedPath(bad), `${await publicKeyOf(newestId)}\n`);
		let r = await settle(id, (s) => s !== 'running');
		expect(r.state, r.abortReason ?? undefined).toBe('completed');
		expect(r.nodes.map((n) => [n.nodeName, n.state, n.reached])).toEqual([
			['r-0', 'done', 'K6'],
			['r-1', 'done', 'K6'],
			['r-2', 'failed', 'K5']
		]);
		// The console cannot even sign in to it with its own key now: K6 never got to touch the file.
		expect(r.nodes[2]!.error).toContain('refused the credential');
		const netKey = await keyFile(r.safetyNetCredentialId!);
		const newest = await keyFile(newestId);
		// K6 did not take away the one key that still lets the console in.
		expect(await logsIn(bad, netKey)).toBe(true);
		expect(await logsIn(bad, newest)).toBe(false);

		await writeFile(revokedPath(bad), '');
		expect((await retryFailedNodes(systemActor, id)).nodes).toEqual(['r-2']);
		r = await settle(id, (s) => s === 'completed');
		expect(r.nodes.map((n) => [n.nodeName, n.state])).toEqual(names.map((n) => [n, 'done']));
		for (const h of bed.hosts) {
			expect(await logsIn(h, newest), h.name).toBe(true);
			expect(await logsIn(h, netKey), h.name).toBe(false);
			expect(await consoleLines(h)).toEqual([`${await publicKeyOf(newestId)} flotilla:primary:${newestId}`]);
		}
	}, 240_000);

	it('a safety net that does not log in aborts at K2: the new key never reaches a host, every host keeps its key', async () => {
		const bad = bed.hosts[0]!;
		const before = await db().select().from(nodes).where(inArray(nodes.name, names)).orderBy(asc(nodes.name));
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const id = started.rotationId;
		await driveUntilEnded(id, 'K1');
		const net = (await getKeyRotation(id)).safetyNetCredentialId!;
		await writeFile(revokedPath(bad), `${await publicKeyOf(net)}\n`);
		const r = await settle(id, (s) => s !== 'running');
		expect([r.state, r.abortedPhase]).toEqual(['aborted', 'K2']);
		expect(r.abortReason).toContain('r-0');
		// After the abort its cleanup takes the safety net off again (ssh-key-rotation.spec.ts follows one through).
		expect(r.phases.map((p) => p.phase)).toEqual(['survey', 'K1', 'K2', 'cleanup']);
		const freshBlob = (await publicKeyOf(r.newCredentialId!)).split(' ')[1]!;
		for (const [i, h] of bed.hosts.entries()) {
			const node = before.find((n) => n.name === names[i])!;
			expect(await logsIn(h, await keyFile(node.credentialId)), h.name).toBe(true);
			expect(await readFile(keysPath(h), 'utf8')).not.toContain(freshBlob);
		}
		expect(
			(await db().select().from(nodes).where(inArray(nodes.name, names)).orderBy(asc(nodes.name))).map(
				(n) => n.credentialId
			)
		).toEqual(before.map((n) => n.credentialId));
		// Nothing was removed: there is nothing to try again, a new rotation is the way on.
		await expect(retryFailedNodes(systemActor, id)).rejects.toThrow('was aborted');
		await writeFile(revokedPath(bad), '');
	}, 240_000);
});
