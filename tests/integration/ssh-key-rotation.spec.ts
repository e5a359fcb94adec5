import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chown, chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eq, inArray } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyRotationAnswerSchema, listOf } from '../../src/lib/schemas/responses';
import { rotateKeysSchema } from '../../src/lib/schemas/ssh-keys';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { db, useDatabase } from '../../src/lib/server/db';
import { auditLog, credentials, keyRotations, nodes, tasks } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { createRun, getRun, startEngine, stopEngine } from '../../src/lib/server/engine';
import { createCredential, deleteCredential, unsealCredential } from '../../src/lib/server/keys/credentials';
import { driveKeyRotations } from '../../src/lib/server/keys/driver';
import { addKey, blobOf, removeKey } from '../../src/lib/server/keys/authorized-keys';
import { connectWith, tryLogin } from '../../src/lib/server/keys/login';
import { connectionRunner, editAuthorizedKeys, readScript, type Runner } from '../../src/lib/server/keys/remote';
import { credentialMarks, getKeyRotation, startKeyRotation, type HostAccess } from '../../src/lib/server/keys/rotation';
import { POST as rotateRoute } from '../../src/routes/api/ssh-keys/rotate/+server';
import { GET as listRotationsRoute } from '../../src/routes/api/ssh-keys/rotations/+server';
import { GET as rotationRoute } from '../../src/routes/api/ssh-keys/rotations/[id]/+server';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * SSH key rotation on real sshd hosts (127.0.1.40–55): who may log in is proven by real logins with the openssh
 * client and each key; authorized_keys is read from the hosts' filesystems.
 */

const run = promisify(execFile);
let bed: Testbed;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let testbedCredential: string;
const masterKey = randomBytes(32);
const idOf = new Map<string, string>();
/** Each host's authorized_keys as set up, before any rotation. */
const originalFiles: string[] = [];

/** Lines no rotation may touch: options with quoted spaces, a comment, a blank line, another person's key. */
const foreignLines = (i: number) =>
	`# ops team keys\nfrom="10.0.0.0/8",command="echo only backups" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJhY2t1cC0${i} backup@vault\n\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDalice${i} alice@laptop\n`;

const keysPath = (h: TestHost) => join(h.root, 'root/.ssh/authorized_keys');

async function keyFile(credentialId: string): Promise<string> {
	const path = join(bed.dir, `key-${credentialId}`);
	await writeFile(path, (await unsealCredential(credentialId)).privateKey, { mode: 0o600 });
	return path;
}

/** A real login with the openssh client: true when the host lets the key in. */
async function logsIn(h: TestHost, keyPath: string): Promise<boolean> {
	try {
		const { stdout } = await run('ssh', [
			'-i',
			keyPath,
			'-o',
			'IdentitiesOnly=yes',
			'-o',
			'BatchMode=yes',
			'-o',
			'PasswordAuthentication=no',
			'-o',
			`UserKnownHostsFile=${bed.knownHostsPath}`,
			'-o',
			'StrictHostKeyChecking=yes',
			'-o',
			'ConnectTimeout=10',
			'-F',
			'/dev/null',
			`root@${h.address}`,
			'echo in'
		]);
		return stdout.trim() === 'in';
	} catch {
		return false;
	}
}

async function settle(rotationId: string, timeoutMs = 120_000) {
	return waitFor(
		'the rotation to settle',
		async () => {
			await driveKeyRotations();
			const r = await getKeyRotation(rotationId);
			return r.state !== 'running' ? r : null;
		},
		timeoutMs
	);
}

async function rotate(input: Record<string, unknown>) {
	const started = await startKeyRotation(systemActor, rotateKeysSchema.parse(input));
	if (!('rotationId' in started)) throw new Error('expected a rotation');
	return settle(started.rotationId);
}

type Handler = (event: never) => Promise<Response>;
/** A route's handler called as SvelteKit calls it (the access rules are the hooks', tested elsewhere). */
function call(handler: Handler, opts: { body?: unknown; params?: Record<string, string> } = {}) {
	const url = new URL('http://console/api/ssh-keys');
	const request = new Request(url, {
		method: opts.body === undefined ? 'GET' : 'POST',
		...(opts.body === undefined
			? {}
			: { headers: { 'content-type': 'application/json' }, body: JSON.stringify(opts.body) })
	});
	return handler({ request, url, params: opts.params ?? {}, locals: {}, getClientAddress: () => '127.0.0.1' } as never);
}

/** Turns the driver until an aborted rotation has cleaned up every node it could. */
async function cleanedUp(rotationId: string) {
	return waitFor(
		'the cleanup after the abort',
		async () => {
			await driveKeyRotations();
			const r = await getKeyRotation(rotationId);
			return r.state === 'aborted' && r.phase === 'done' ? r : null;
		},
		120_000
	);
}

/** Every line but the console's own: what must come out of a rotation byte for byte. */
const othersOf = (text: string, consoleBlobs: string[]) =>
	text.split('\n').filter((l) => !l.includes('flotilla:') && !consoleBlobs.some((b) => l.includes(b)));

beforeAll(async () => {
	bed = await startTestbed({ hosts: 16, firstHost: 40, roles: [] });
	pg = await freshPostgres('flotilla_keys');
	useDatabase(pg);
	useMasterKey(masterKey);
	registerDomains();
	testbedCredential = (await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey })).id;
	const rows = await db()
		.insert(nodes)
		.values(
			bed.hosts.map((h, i) => ({
				name: `k-${String(i).padStart(2, '0')}`,
				host: h.address,
				port: h.port,
				credentialId: testbedCredential,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const
			}))
		)
		.returning({ id: nodes.id, name: nodes.name });
	for (const r of rows) idOf.set(r.name, r.id);
	for (const [i, h] of bed.hosts.entries()) {
		const console = await readFile(keysPath(h), 'utf8');
		// Host 3's file has no final newline; host 5's belongs to another user with mode 640.
		const text = i === 3 ? `${foreignLines(i)}${console.trimEnd()}` : `${foreignLines(i)}${console}`;
		await writeFile(keysPath(h), text);
		originalFiles[i] = text;
		await chmod(keysPath(h), i === 5 ? 0o640 : 0o600);
		if (i === 5) await chown(keysPath(h), 4242, 4343);
	}
	await startEngine({ concurrency: 30, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	await pg?.close();
	await bed?.stop();
});

const names = (from: number, to: number) =>
	Array.from({ length: to - from }, (_, i) => `k-${String(from + i).padStart(2, '0')}`);
const hostsOf = (from: number, to: number) => bed.hosts.slice(from, to);

describe('a rotation of the console key', () => {
	it('the dry run says what each host accepts today and changes nothing', async () => {
		const before = await Promise.all(hostsOf(0, 10).map((h) => readFile(keysPath(h), 'utf8')));
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names(0, 10), dry_run: true }));
		expect('dryRun' in started).toBe(true);
		const report = (started as { dryRun: HostAccess[] }).dryRun;
		expect(report.map((r) => r.node)).toEqual(names(0, 10));
		for (const r of report) {
			expect(r.reachable).toBe(true);
			expect(r.survey!.consoleKeys.map((k) => k.credential)).toEqual(['testbed']);
			expect(r.survey!.otherKeys.map((k) => k.comment)).toEqual(['backup@vault', 'alice@laptop']);
			expect(['yes', 'no', 'unknown']).toContain(r.survey!.passwordLogin);
		}
		expect(report[5]!.survey).toMatchObject({
			mode: '640',
			owner: expect.stringMatching(/^(4242|UNKNOWN):(4343|UNKNOWN)$/)
		});
		expect(await Promise.all(hostsOf(0, 10).map((h) => readFile(keysPath(h), 'utf8')))).toEqual(before);
		expect(await db().select().from(keyRotations)).toEqual([]);
	});

	it('on 10 hosts: afterwards only the new key and the safety net log in; every other line, mode and owner unchanged', async () => {
		const hosts = hostsOf(0, 10);
		const before = await Promise.all(hosts.map((h) => readFile(keysPath(h), 'utf8')));
		const statsBefore = await Promise.all(hosts.map((h) => stat(keysPath(h))));
		const oldBlob = (
			await db().select().from(credentials).where(eq(credentials.id, testbedCredential))
		)[0]!.publicKey.split(' ')[1]!;

		const r = await rotate({ nodes: names(0, 10) });
		expect(r.state).toBe('completed');
		expect(r.phases.map((p) => [p.phase, p.state])).toEqual(
			['survey', 'K1', 'K2', 'K3', 'K4', 'K5'].map((p) => [p, 'passed'])
		);
		expect(r.nodes.every((n) => n.state === 'done' && n.reached === 'K5')).toBe(true);

		const oldKey = bed.clientPrivateKeyPath;
		const newKey = await keyFile(r.newCredentialId!);
		const netKey = await keyFile(r.safetyNetCredentialId!);
		for (const h of hosts) {
			expect(await logsIn(h, newKey), `${h.name} new key`).toBe(true);
			expect(await logsIn(h, netKey), `${h.name} safety net`).toBe(true);
			expect(await logsIn(h, oldKey), `${h.name} old key`).toBe(false);
		}
		const credentialOf = async (id: string) =>
			(await db().select().from(credentials).where(eq(credentials.id, id)))[0]!;
		const fresh = await credentialOf(r.newCredentialId!);
		const net = await credentialOf(r.safetyNetCredentialId!);
		for (const [i, h] of hosts.entries()) {
			const after = await readFile(keysPath(h), 'utf8');
			expect(othersOf(after, [oldBlob]).filter(Boolean)).toEqual(othersOf(before[i]!, [oldBlob]).filter(Boolean));
			// The foreign lines come first, in their place and byte for byte.
			expect(after.startsWith(foreignLines(i))).toBe(true);
			expect(after).not.toContain(oldBlob);
			expect(after.split('\n').filter((l) => l.includes(fresh.publicKey.split(' ')[1]!))).toEqual([
				`${fresh.publicKey} flotilla:primary:${fresh.id}`
			]);
			expect(after.split('\n').filter((l) => l.includes(net.publicKey.split(' ')[1]!))).toEqual([
				`${net.publicKey} flotilla:safety-net:${net.id}`
			]);
			const s = await stat(keysPath(h));
			expect([s.mode & 0o777, s.uid, s.gid]).toEqual([
				statsBefore[i]!.mode & 0o777,
				statsBefore[i]!.uid,
				statsBefore[i]!.gid
			]);
		}
		// The console signs in with the new key for everything; the old one is kept, marked retired.
		const rows = await db()
			.select()
			.from(nodes)
			.where(inArray(nodes.name, names(0, 10)));
		expect(new Set(rows.map((n) => n.credentialId))).toEqual(new Set([fresh.id]));
		expect((await credentialMarks()).get(testbedCredential)).toBe('retired');
		expect((await credentialMarks()).get(net.id)).toBe('safety net');
		// An audit row per phase, K0 included.
		const audit = await db().select().from(auditLog).where(eq(auditLog.targetId, r.id));
		expect(audit.map((a) => (a.details as { phase: string }).phase).sort()).toEqual([
			'K0',
			'K1',
			'K2',
			'K3',
			'K4',
			'K5',
			'survey'
		]);
		// Nothing secret in the rotation's records.
		const secret = (await unsealCredential(net.id)).privateKey.split('\n')[1]!;
		expect(JSON.stringify(await db().select().from(auditLog))).not.toContain(secret);
	}, 180_000);

	it('a second rotation reuses the kept safety net and removes it at K6: then only the newest key logs in; run again, nothing changes', async () => {
		const hosts = hostsOf(0, 10);
		const previous = (await db().select().from(keyRotations))[0]!;
		const r = await rotate({ nodes: names(0, 10), remove_safety_net: true });
		expect(r.state, r.abortReason ?? undefined).toBe('completed');
		expect(r.safetyNetCredentialId).toBe(previous.safetyNetCredentialId);
		expect(r.phases.map((p) => p.phase)).toEqual(['survey', 'K1', 'K2', 'K3', 'K4', 'K5', 'K6']);
		const newest = await keyFile(r.newCredentialId!);
		const keys = [
			bed.clientPrivateKeyPath,
			await keyFile(previous.newCredentialId!),
			await keyFile(r.safetyNetCredentialId!)
		];
		const files: string[] = [];
		for (const [i, h] of hosts.entries()) {
			expect(await logsIn(h, newest)).toBe(true);
			for (const k of keys) expect(await logsIn(h, k), `${h.name} ${k}`).toBe(false);
			const after = await readFile(keysPath(h), 'utf8');
			expect(after.startsWith(foreignLines(i))).toBe(true);
			expect(after.split('\n').filter((l) => l.includes('flotilla:'))).toHaveLength(1);
			files.push(after);
		}
		// Each phase run again adds no line and removes nothing else: the files stay as they are.
		for (const phase of ['K1', 'K3', 'K5', 'K6']) {
			const again = await createRun(systemActor, {
				kind: 'ssh-key-phase',
				title: `again ${phase}`,
				nodeIds: names(0, 10).map((n) => idOf.get(n)!),
				params: { rotation_id: r.id, phase }
			});
			expect((await waitForRun(again.id, ['succeeded', 'failed'], 60_000)).state).toBe('succeeded');
		}
		expect(await Promise.all(hosts.map((h) => readFile(keysPath(h), 'utf8')))).toEqual(files);
		// A retired key nothing needs any more is the admin's to delete.
		await deleteCredential(systemActor, previous.newCredentialId!);
	}, 180_000);

	it('a host that refuses the new key at K4 aborts before K5: every host still lets in the key the console uses', async () => {
		const hosts = hostsOf(10, 14);
		const bad = hosts[1]!;
		// sshd refuses keys listed in RevokedKeys, read at every login: the new key is revoked on one host only.
		const revoked = join(bad.root, 'etc/ssh/revoked_keys');
		await writeFile(revoked, '');
		await writeFile(
			join(bad.root, 'etc/ssh/sshd_config'),
			`${await readFile(join(bad.root, 'etc/ssh/sshd_config'), 'utf8')}RevokedKeys ${revoked}\n`
		);
		await bed.stopHost(bad);
		await bed.startHost(bad);
		const [current] = await db().select().from(nodes).where(eq(nodes.name, 'k-10'));
		const consoleKey = await keyFile(current!.credentialId);
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names(10, 14) }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const fresh = (await getKeyRotation(started.rotationId)).newCredentialId!;
		const [freshRow] = await db().select().from(credentials).where(eq(credentials.id, fresh));
		await writeFile(revoked, `${freshRow!.publicKey}\n`);
		const r = await settle(started.rotationId);
		expect(r.state).toBe('aborted');
		expect(r.abortedPhase).toBe('K4');
		expect(r.abortReason).toContain('k-11');
		expect(r.phases.find((p) => p.phase === 'K4')).toMatchObject({
			phase: 'K4',
			state: 'failed',
			problems: [expect.objectContaining({ node: 'k-11', unreachable: false })]
		});
		expect(r.phases.map((p) => p.phase)).not.toContain('K5');
		// The cleanup after the abort is under way (the next test follows it): it never takes the console's key.
		for (const h of hosts) expect(await logsIn(h, consoleKey), `${h.name} the console's key`).toBe(true);
		expect(await logsIn(bad, await keyFile(fresh))).toBe(false);
		const rows = await db()
			.select()
			.from(nodes)
			.where(inArray(nodes.name, names(10, 14)));
		expect(new Set(rows.map((n) => n.credentialId))).toEqual(new Set([current!.credentialId]));
	}, 180_000);

	it('after the K4 abort the cleanup takes the new key and the safety net off again: only the old key logs in, every file as it was', async () => {
		const hosts = hostsOf(10, 14);
		const [aborted] = await db().select().from(keyRotations).where(eq(keyRotations.state, 'aborted'));
		// Hosts 10–13 were never rotated before the aborted rotation: their files are still as the test set them up.
		const before = hosts.map((_, i) => originalFiles[10 + i]!);
		const r = await cleanedUp(aborted!.id);
		expect(r.abortedPhase).toBe('K4');
		expect(r.nodes.map((n) => [n.nodeName, n.state])).toEqual(names(10, 14).map((n) => [n, 'cleaned']));
		expect(r.phases.map((p) => [p.phase, p.state])).toEqual([
			['survey', 'passed'],
			['K1', 'passed'],
			['K2', 'passed'],
			['K3', 'passed'],
			['K4', 'failed'],
			['cleanup', 'passed']
		]);
		const oldKey = await keyFile(aborted!.oldCredentialId!);
		const newKey = await keyFile(aborted!.newCredentialId!);
		const netKey = await keyFile(aborted!.safetyNetCredentialId!);
		for (const [i, h] of hosts.entries()) {
			expect(await logsIn(h, oldKey), `${h.name} old key`).toBe(true);
			expect(await logsIn(h, newKey), `${h.name} new key`).toBe(false);
			expect(await logsIn(h, netKey), `${h.name} safety net`).toBe(false);
			expect(await readFile(keysPath(h), 'utf8'), h.name).toBe(before[i]);
		}
		const audit = await db().select().from(auditLog).where(eq(auditLog.targetId, r.id));
		const cleanups = audit.filter((a) => a.action === 'ssh_keys.cleanup').map((a) => a.details);
		expect(cleanups).toHaveLength(1);
		expect(cleanups[0]).toMatchObject({ phase: 'cleanup', run_id: r.phases.at(-1)!.runId });
		const audited = (cleanups[0] as { nodes: { node: string; state: string }[] }).nodes;
		expect(audited.map((n) => [n.node, n.state]).sort()).toEqual(names(10, 14).map((n) => [n, 'succeeded']));
		// The API shows the abort and its cleanup, with the run of every phase.
		const res = await call(rotationRoute as Handler, { params: { id: r.id } });
		expect(res.status).toBe(200);
		const answer = keyRotationAnswerSchema.parse(await res.json());
		expect(answer).toMatchObject({
			id: r.id,
			state: 'aborted',
			phase: 'done',
			aborted_phase: 'K4',
			credential: { from: { id: aborted!.oldCredentialId }, to: { id: aborted!.newCredentialId } },
			deferred_nodes: [],
			cleanup_pending_nodes: []
		});
		expect(answer.abort_reason).toContain('k-11');
		expect(answer.phases.map((p) => [p.phase, p.run_id])).toEqual(r.phases.map((p) => [p.phase, p.runId]));
		expect(answer.nodes.map((n) => [n.node, n.state, n.reached])).toEqual(
			r.nodes.map((n) => [n.nodeName, 'cleaned', n.reached])
		);

		// A second rotation of the same hosts afterwards goes through.
		const again = await rotate({ nodes: names(10, 14) });
		expect(again.state, again.abortReason ?? undefined).toBe('completed');
		const newest = await keyFile(again.newCredentialId!);
		for (const [i, h] of hosts.entries()) {
			expect(await logsIn(h, newest), h.name).toBe(true);
			expect(await logsIn(h, oldKey), h.name).toBe(false);
			expect((await readFile(keysPath(h), 'utf8')).startsWith(foreignLines(10 + i))).toBe(true);
		}
	}, 240_000);

	it('GET /api/ssh-keys/rotations lists the rotations newest first; a malformed id is a 400 naming it, an unknown one a 404', async () => {
		const res = await call(listRotationsRoute as Handler);
		expect(res.status).toBe(200);
		const list = listOf(keyRotationAnswerSchema).parse(await res.json());
		const all = await db().select().from(keyRotations);
		expect(list.items.map((r) => r.number)).toEqual(all.map((r) => r.number).sort((a, b) => b - a));
		const malformed = await call(rotationRoute as Handler, { params: { id: 'not-a-uuid' } });
		expect(malformed.status).toBe(400);
		expect((await malformed.json()).error.fields).toEqual({ id: 'must be a UUID' });
		const unknown = await call(rotationRoute as Handler, { params: { id: crypto.randomUUID() } });
		expect(unknown.status).toBe(404);
	});

	it('two rotations of the same nodes started at the same instant: exactly one starts, the other gets 409, round after round', async () => {
		const credentialsBefore = await db().select({ id: credentials.id }).from(credentials);
		const rotationsBefore = await db().select({ id: keyRotations.id }).from(keyRotations);
		for (let round = 0; round < 3; round++) {
			const answers = await Promise.all([
				call(rotateRoute as Handler, { body: { nodes: names(10, 14) } }),
				call(rotateRoute as Handler, { body: { nodes: names(10, 14) } })
			]);
			expect(answers.map((a) => a.status).sort(), `round ${round}`).toEqual([202, 409]);
			const refused = await answers.find((a) => a.status === 409)!.json();
			expect(refused.error).toMatchObject({
				code: 'conflict',
				fields: { nodes: expect.stringContaining('rotation #') }
			});
			const { rotation_id } = await answers.find((a) => a.status === 202)!.json();
			expect((await settle(rotation_id)).state).toBe('completed');
		}
		// Three rotations; the only credentials made are their new keys (each reuses the safety net the last one
		// kept): the refused starts left nothing behind.
		const rotations = await db().select().from(keyRotations);
		expect(rotations).toHaveLength(rotationsBefore.length + 3);
		const theirs = rotations
			.filter((r) => !rotationsBefore.some((b) => b.id === r.id))
			.flatMap((r) => [r.newCredentialId!, r.safetyNetCredentialId!]);
		const made = (await db().select({ id: credentials.id }).from(credentials))
			.map((c) => c.id)
			.filter((c) => !credentialsBefore.some((b) => b.id === c));
		expect(made.sort()).toEqual([...new Set(theirs)].filter((c) => !credentialsBefore.some((b) => b.id === c)).sort());
		expect(made).toHaveLength(3);
	}, 300_000);

	it('a node away during the cleanup stays "cleanup pending", blocks a new rotation of it, and is cleaned when it is back', async () => {
		const hosts = hostsOf(10, 14);
		const [bad, away] = [hosts[1]!, hosts[2]!];
		const before = await Promise.all(hosts.map((h) => readFile(keysPath(h), 'utf8')));
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names(10, 14) }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		const r0 = await getKeyRotation(started.rotationId);
		const [freshRow] = await db().select().from(credentials).where(eq(credentials.id, r0.newCredentialId!));
		// k-11 refuses the new key again (sshd's RevokedKeys, set up above), so K4 aborts.
		await writeFile(join(bad.root, 'etc/ssh/revoked_keys'), `${freshRow!.publicKey}\n`);
		// Turned until K4 runs, then not while it runs: k-12 goes away after K4 and before the abort's cleanup.
		const k4 = await waitFor(
			'K4 to start',
			async () => {
				await driveKeyRotations();
				const r = await getKeyRotation(r0.id);
				return r.phase === 'K4' && r.phaseRunId ? r.phaseRunId : null;
			},
			120_000
		);
		await waitForRun(k4, ['succeeded', 'failed', 'cancelled'], 60_000);
		await bed.stopHost(away);
		const pending = await waitFor(
			'the first cleanup run to end',
			async () => {
				await driveKeyRotations();
				const r = await getKeyRotation(r0.id);
				return r.state === 'aborted' && !r.catchUpRunId && r.phases.some((p) => p.phase === 'cleanup') ? r : null;
			},
			120_000
		);
		expect(pending.phase).toBe('cleanup');
		expect(pending.nodes.map((n) => [n.nodeName, n.state])).toEqual([
			['k-10', 'cleaned'],
			['k-11', 'cleaned'],
			['k-12', 'cleanup'],
			['k-13', 'cleaned']
		]);
		expect(pending.phases.at(-1)).toMatchObject({
			phase: 'cleanup',
			state: 'failed',
			problems: [expect.objectContaining({ node: 'k-12', unreachable: true })]
		});
		const answer = keyRotationAnswerSchema.parse(
			await (await call(rotationRoute as Handler, { params: { id: r0.id } })).json()
		);
		expect([answer.phase, answer.cleanup_pending_nodes]).toEqual(['cleanup', ['k-12']]);
		// Its lines are still there: no new rotation of it until they are gone.
		const refused = await call(rotateRoute as Handler, { body: { nodes: ['k-12'] } });
		expect(refused.status).toBe(409);
		expect((await refused.json()).error.fields).toEqual({ nodes: `k-12 is still in rotation #${r0.number}` });

		await bed.startHost(away);
		await db().update(nodes).set({ lastSeenAt: new Date(), reachable: true }).where(eq(nodes.name, 'k-12'));
		const done = await cleanedUp(r0.id);
		expect(done.nodes.map((n) => n.state)).toEqual(['cleaned', 'cleaned', 'cleaned', 'cleaned']);
		expect(done.phases.filter((p) => p.phase === 'cleanup').map((p) => [p.state, p.nodes])).toEqual([
			['failed', 4],
			['passed', 1]
		]);
		const [current] = await db().select().from(nodes).where(eq(nodes.name, 'k-12'));
		const consoleKey = await keyFile(current!.credentialId);
		const freshKey = await keyFile(r0.newCredentialId!);
		for (const [i, h] of hosts.entries()) {
			expect(await logsIn(h, consoleKey), h.name).toBe(true);
			expect(await logsIn(h, freshKey), h.name).toBe(false);
			// The safety net was kept by the last rotation and reused: it was there before, so it stays.
			expect(await readFile(keysPath(h), 'utf8'), h.name).toBe(before[i]);
		}
	}, 300_000);

	it('an unreachable host never blocks the others and keeps its old key; the rotation stays open and finishes when it is back', async () => {
		const hosts = hostsOf(14, 16);
		const away = hosts[1]!;
		const [current] = await db().select().from(nodes).where(eq(nodes.name, 'k-14'));
		const consoleKey = await keyFile(current!.credentialId);
		await bed.stopHost(away);
		const started = await startKeyRotation(systemActor, rotateKeysSchema.parse({ nodes: names(14, 16) }));
		if (!('rotationId' in started)) throw new Error('expected a rotation');
		let r = await settle(started.rotationId);
		expect(r.state).toBe('open');
		expect(r.nodes.map((n) => [n.nodeName, n.state])).toEqual([
			['k-14', 'done'],
			['k-15', 'deferred']
		]);
		expect(r.phases[0]!.problems).toEqual([expect.objectContaining({ node: 'k-15', unreachable: true })]);
		const fresh = await keyFile(r.newCredentialId!);
		// While it waits, the rotation's keys cannot be deleted, not even the safety net that no node signs in with.
		await expect(deleteCredential(systemActor, r.safetyNetCredentialId!)).rejects.toThrow(
			`Key rotation #${r.number} still needs`
		);
		expect(await logsIn(hosts[0]!, fresh)).toBe(true);
		expect(await logsIn(hosts[0]!, consoleKey)).toBe(false);
		await bed.startHost(away);
		expect(await logsIn(away, consoleKey)).toBe(true);
		// The health sweep sees it again; the next turn catches it up.
		await db().update(nodes).set({ lastSeenAt: new Date(), reachable: true }).where(eq(nodes.name, 'k-15'));
		r = await waitFor(
			'the catch-up',
			async () => {
				await driveKeyRotations();
				const now = await getKeyRotation(r.id);
				return now.state === 'completed' ? now : null;
			},
			120_000
		);
		expect(r.nodes.map((n) => n.state)).toEqual(['done', 'done']);
		expect(await logsIn(away, fresh)).toBe(true);
		expect(await logsIn(away, consoleKey)).toBe(false);
	}, 180_000);

	it('an edit that races another writer of authorized_keys is applied again to what that writer left', async () => {
		const h = bed.hosts[15]!;
		const [node] = await db().select().from(nodes).where(eq(nodes.name, 'k-15'));
		const conn = await connectWith(node!, node!.credentialId);
		try {
			const commands: string[] = [];
			const inner = connectionRunner(conn);
			const runner: Runner = async (command) => {
				commands.push(command === readScript ? 'read' : 'write');
				const r = await inner(command);
				// Someone else adds a key between the console's first read and its write.
				if (commands.length === 1)
					await appendFile(keysPath(h), 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJhY2Vy racer@elsewhere\n');
				return r;
			};
			const added = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFkZGVk';
			expect(await editAuthorizedKeys(runner, (content) => addKey(content, added, 'flotilla:primary:test'))).toBe(true);
			// The first write was refused (the file had changed), the edit read it again and wrote on top of it.
			expect(commands).toEqual(['read', 'write', 'read', 'write']);
			const after = (await readFile(keysPath(h), 'utf8')).split('\n');
			expect(after.filter((l) => l.includes('racer@elsewhere') || l.includes(added))).toEqual([
				'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHJhY2Vy racer@elsewhere',
				`${added} flotilla:primary:test`
			]);
			// Undone, so the hosts are as the rotations left them.
			expect(
				await editAuthorizedKeys(connectionRunner(conn), (content) =>
					removeKey(removeKey(content, blobOf(added)), 'AAAAC3NzaC1lZDI1NTE5AAAAIHJhY2Vy')
				)
			).toBe(true);
		} finally {
			conn.close();
		}
	});

	it('a login proof tries a node that did not answer again before judging the key; a refused key is judged at once', async () => {
		const h = bed.hosts[15]!;
		const [node] = await db().select().from(nodes).where(eq(nodes.name, 'k-15'));
		const pauses: number[] = [];
		await bed.stopHost(h);
		// Down for the first attempt, back before the second.
		expect(
			await tryLogin(node!, node!.credentialId, async (attempt) => {
				pauses.push(attempt);
				if (attempt === 1) await bed.startHost(h);
			})
		).toBeNull();
		expect(pauses).toEqual([1]);
		// Down for good: every attempt made, and the reason says so.
		await bed.stopHost(h);
		pauses.length = 0;
		const away = await tryLogin(node!, node!.credentialId, async (attempt) => void pauses.push(attempt));
		expect(away).toMatch(/^unreachable: .*\(after 3 attempts\)$/);
		expect(pauses).toEqual([1, 2]);
		await bed.startHost(h);
		// A key the node does not accept: no second attempt.
		pauses.length = 0;
		expect(await tryLogin(node!, testbedCredential, async (attempt) => void pauses.push(attempt))).toMatch(/^auth: /);
		expect(pauses).toEqual([]);
	});

	it('a console killed mid-phase and started again finishes the rotation: no line twice, every host proven by login', async () => {
		// This console's engine stops: from here on only the child consoles run tasks and turn the driver.
		await stopEngine();
		const hosts = hostsOf(0, 10);
		const startConsole = () =>
			new Promise<{ child: ChildProcess; lines: string[] }>((resolve, reject) => {
				const child = spawn(
					process.execPath,
					[
						'--no-warnings',
						'--experimental-transform-types',
						'--import',
						'./tests/support/ts-hooks.mjs',
						'tests/support/key-rotation-process.ts'
					],
					{
						env: {
							...process.env,
							DATABASE_URL: pg.url,
							FLOTILLA_TEST_MASTER_KEY: masterKey.toString('hex'),
							LEASE_MS: '3000',
							FLOTILLA_LOG_LEVEL: 'error'
						},
						stdio: ['pipe', 'pipe', 'inherit']
					}
				);
				const lines: string[] = [];
				const timer = setTimeout(() => reject(new Error('the console did not start in 30 s')), 30_000);
				child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
					lines.push(...chunk.split('\n').filter(Boolean));
					if (lines.includes('ready')) {
						clearTimeout(timer);
						resolve({ child, lines });
					}
				});
			});
		const first = await startConsole();
		first.child.stdin!.write(`rotate ${JSON.stringify({ nodes: names(0, 10), remove_safety_net: true })}\n`);
		const id = await waitFor('the rotation to start', async () =>
			first.lines.find((l) => l.startsWith('started '))?.slice(8)
		);
		// SIGKILL while K3 has a task running on a node.
		const killedIn = await waitFor(
			'a K3 task running',
			async () => {
				const [r] = await db().select().from(keyRotations).where(eq(keyRotations.id, id));
				if (r?.phase !== 'K3' || !r.phaseRunId) return null;
				const running = await db().select({ id: tasks.id }).from(tasks).where(eq(tasks.runId, r.phaseRunId));
				const busy = await db()
					.select({ state: tasks.state })
					.from(tasks)
					.where(
						inArray(
							tasks.id,
							running.map((t) => t.id)
						)
					);
				return busy.some((t) => t.state === 'running') ? r.phaseRunId : null;
			},
			60_000
		);
		first.child.kill('SIGKILL');
		await new Promise((resolve) => first.child.once('exit', resolve));
		const second = await startConsole();
		try {
			const r = await waitFor(
				'the rotation to finish on the second console',
				async () => {
					const now = await getKeyRotation(id);
					return now.state !== 'running' ? now : null;
				},
				120_000
			);
			expect(r.state).toBe('completed');
			// The phase the first console died in was finished by the second: the same run, every task succeeded.
			const k3 = await getRun(killedIn);
			expect([k3.state, k3.tasks.every((t) => t.state === 'succeeded')]).toEqual(['succeeded', true]);
			expect(r.phases.map((p) => [p.phase, p.state])).toEqual(
				['survey', 'K1', 'K2', 'K3', 'K4', 'K5', 'K6'].map((p) => [p, 'passed'])
			);
			const newest = await keyFile(r.newCredentialId!);
			const fresh = (await db().select().from(credentials).where(eq(credentials.id, r.newCredentialId!)))[0]!;
			for (const [i, h] of hosts.entries()) {
				expect(await logsIn(h, newest), h.name).toBe(true);
				const after = await readFile(keysPath(h), 'utf8');
				expect(after.startsWith(foreignLines(i))).toBe(true);
				expect(after.split('\n').filter((l) => l.includes('flotilla:'))).toEqual([
					`${fresh.publicKey} flotilla:primary:${fresh.id}`
				]);
			}
		} finally {
			second.child.kill('SIGTERM');
			await new Promise((resolve) => second.child.once('exit', resolve));
		}
	}, 240_000);
});
