import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase, type DatabaseHandle } from '../../src/lib/server/db';
import { startEngine, stopEngine } from '../../src/lib/server/engine';
import { registerFlow } from '../../src/lib/server/engine/flows';
import { cancelRun, createRun } from '../../src/lib/server/engine/runs';
import { registerFleet } from '../../src/lib/server/fleet/register';
import type { SshConnection } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import {
	closeWarmConnections,
	configureWarmConnections,
	DEFAULT_WARM,
	keepWarm,
	openConnection,
	warmConnectionCount
} from '../../src/lib/server/ssh/warm';
import { freshPostgres } from '../support/databases';
import { waitFor, waitForRun } from '../support/engine';
import { sequenceFlow } from '../support/flows';
import { registerTestbedNodes, testbedTarget } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';

registerFleet();
registerFlow(sequenceFlow);

let bed: Testbed;
let a: TestHost;
let b: TestHost;

beforeAll(async () => {
	bed = await startTestbed({ hosts: 2, firstHost: 97, roles: [] });
	[a, b] = bed.hosts as [TestHost, TestHost];
}, 60_000);
afterAll(() => bed?.stop());
afterEach(() => {
	closeWarmConnections();
	configureWarmConnections(DEFAULT_WARM);
});

const target = (h: TestHost, pinned?: string) => testbedTarget(bed, h, pinned);

/** /proc/net/tcp writes an IPv4 address as the hex of its bytes in host (little-endian) order. */
const hexAddress = (ip: string) =>
	ip
		.split('.')
		.map((n) => Number(n).toString(16).padStart(2, '0').toUpperCase())
		.reverse()
		.join('');

/**
 * The SSH sessions a host's sshd holds open, read off the kernel (ESTABLISHED sockets on its address:22):
 * each one's client port and socket inode. A reused session keeps its port; a new login brings a new one.
 */
function sessionsOn(h: TestHost): { port: number; inode: string }[] {
	const local = `${hexAddress(h.address)}:${h.port.toString(16).padStart(4, '0').toUpperCase()}`;
	return readFileSync('/proc/net/tcp', 'utf8')
		.split('\n')
		.slice(1)
		.map((line) => line.trim().split(/\s+/))
		.filter((f) => f[1] === local && f[3] === '01')
		.map((f) => ({ port: parseInt(f[2]!.split(':')[1]!, 16), inode: f[9]! }))
		.sort((x, y) => x.port - y.port);
}
const portsOn = (h: TestHost) => sessionsOn(h).map((s) => s.port);

/** The processes holding a socket: the host's sshd serving that session. */
function holdersOf(inode: string): number[] {
	const pids: number[] = [];
	for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
		try {
			if (readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`))
				pids.push(Number(pid));
		} catch {
			// Gone, or not ours to read.
		}
	}
	return pids;
}

/** Whether the flow's hanging command runs on a host. */
function hanging(): boolean {
	try {
		return execFileSync('pgrep', ['-f', 'sleep 600'], { encoding: 'utf8' }).trim() !== '';
	} catch {
		return false;
	}
}

async function ran(conn: SshConnection): Promise<string> {
	return (await conn.exec(sh`echo ${'warm'}`, { deadlineMs: 10_000 })).stdout.trim();
}

describe('warm sessions on a real OpenSSH host', () => {
	it('hands a kept session to the next caller for the same target: no new login reaches the host', async () => {
		const first = await openConnection(target(a));
		expect(await ran(first)).toBe('warm');
		const [port] = portsOn(a);
		keepWarm(first);
		expect(warmConnectionCount()).toBe(1);
		const second = await openConnection(target(a));
		expect(second).toBe(first);
		expect(await ran(second)).toBe('warm');
		expect(portsOn(a)).toEqual([port]);
		expect(warmConnectionCount()).toBe(0);
		second.close();
	});

	it('gives another target a session of its own: another pinned key is refused, a fresh one logs in again', async () => {
		const kept = await openConnection(target(a));
		keepWarm(kept);
		// Pinned to another key (an admin re-pinned it, say): the warm session, verified against the old key, is
		// not handed out; a new handshake meets the host's real key and is refused.
		const other = `SHA256:${randomBytes(32).toString('base64').replace(/=+$/, '')}`;
		await expect(openConnection(target(a, other))).rejects.toMatchObject({ failure: 'host_key_changed' });
		// Another host is another target.
		const onB = await openConnection(target(b));
		expect(onB).not.toBe(kept);
		onB.close();
		// A check asks for a fresh session: a handshake of its own while the warm one stays kept.
		const fresh = await openConnection(target(a), {}, { fresh: true });
		expect(fresh).not.toBe(kept);
		expect(portsOn(a)).toHaveLength(2);
		expect(warmConnectionCount()).toBe(1);
		keepWarm(fresh);
		expect(warmConnectionCount()).toBe(2);
	});

	it('never hands out a session that died while idle, nor one that hangs: the caller gets a new one', async () => {
		const dead = await openConnection(target(a));
		keepWarm(dead);
		await bed.stopHost(a);
		await bed.startHost(a);
		const afterRestart = await openConnection(target(a));
		expect(afterRestart).not.toBe(dead);
		expect(dead.closed).toBe(true);
		expect(await ran(afterRestart)).toBe('warm');

		// A session whose sshd stopped answering (frozen: its socket stays open, nothing tells the client) fails
		// the warm check's command and is given up for a new login.
		const [hung] = sessionsOn(a);
		const frozen = holdersOf(hung!.inode);
		expect(frozen.length).toBeGreaterThan(0);
		keepWarm(afterRestart);
		for (const pid of frozen) process.kill(pid, 'SIGSTOP');
		try {
			const next = await openConnection(target(a));
			expect(next).not.toBe(afterRestart);
			expect(await ran(next)).toBe('warm');
			next.close();
		} finally {
			for (const pid of frozen) process.kill(pid, 'SIGCONT');
		}
		await waitFor('the given-up session to close on the host', async () => !portsOn(a).includes(hung!.port));
	});

	it('closes a session after its idle time, and the one idle longest when more are kept than allowed', async () => {
		configureWarmConnections({ idleMs: 300, max: 1 });
		const onA = await openConnection(target(a));
		const onB = await openConnection(target(b));
		keepWarm(onA);
		keepWarm(onB);
		// At most one kept: the one idle longest (a's) closed.
		await waitFor('a’s session to close', async () => onA.closed && portsOn(a).length === 0);
		expect(onB.closed).toBe(false);
		expect(warmConnectionCount()).toBe(1);
		await waitFor('b’s session to close after its idle time', async () => onB.closed && portsOn(b).length === 0);
		expect(warmConnectionCount()).toBe(0);
	});

	it('keeps no session that still runs a command, and none when warm sessions are off', async () => {
		const busy = await openConnection(target(a));
		const running = busy.exec(sh`sleep 5`, { deadlineMs: 60_000 }).catch(() => undefined);
		keepWarm(busy);
		await running;
		expect(busy.closed).toBe(true);
		expect(warmConnectionCount()).toBe(0);

		configureWarmConnections({ idleMs: 0, max: 200 });
		const off = await openConnection(target(a));
		keepWarm(off);
		await waitFor('the session to close', async () => off.closed);
		expect(warmConnectionCount()).toBe(0);
	});
});

describe('warm sessions in the engine', () => {
	let handle: DatabaseHandle;
	let nodeA: string;

	beforeAll(async () => {
		handle = await freshPostgres('flotilla_warm');
		useDatabase(handle);
		useMasterKey(randomBytes(32));
		const rows = await registerTestbedNodes(bed);
		nodeA = rows.find((n) => n.name === a.name)!.id;
		await startEngine({ concurrency: 10, leaseMs: 5_000, sweepMs: 1_000 });
	}, 60_000);
	afterAll(async () => {
		await stopEngine();
		useMasterKey(undefined);
		useDatabase(undefined);
		await handle?.close();
	});

	const runOn = async (kind: string) => {
		const run = await createRun(systemActor, { kind, title: kind, nodeIds: [nodeA], params: {} });
		return waitForRun(run.id, ['succeeded']);
	};

	it('runs a node’s next task on the session its last task left, and a check on a session of its own', async () => {
		expect(portsOn(a)).toEqual([]);
		await runOn('test-sequence');
		const [port] = portsOn(a);
		expect(port).toBeDefined();
		expect(warmConnectionCount()).toBe(1);
		const second = await runOn('test-sequence');
		expect(second.tasks[0]!.state).toBe('succeeded');
		expect(portsOn(a)).toEqual([port]);

		// The check proves a handshake with the pinned key now: it logs in again, and leaves its session warm too.
		await runOn('check');
		expect(portsOn(a)).toHaveLength(2);
		expect(portsOn(a)).toContain(port);
		expect(warmConnectionCount()).toBe(2);
	});

	it('closes the session of a cancelled task instead of keeping it', async () => {
		closeWarmConnections();
		await waitFor('no session left', async () => portsOn(a).length === 0);
		const run = await createRun(systemActor, {
			kind: 'test-sequence',
			title: 'hang',
			nodeIds: [nodeA],
			params: { hang_at: 2 }
		});
		await waitFor('the hanging step', async () => hanging());
		await cancelRun(systemActor, run.id);
		await waitForRun(run.id, ['cancelled']);
		expect(warmConnectionCount()).toBe(0);
		await waitFor('its session to close on the host', async () => portsOn(a).length === 0);
	});

	it('closes every warm session when the engine stops', async () => {
		await runOn('test-sequence');
		expect(warmConnectionCount()).toBe(1);
		await stopEngine();
		expect(warmConnectionCount()).toBe(0);
		await waitFor('the session to close on the host', async () => portsOn(a).length === 0);
		await startEngine({ concurrency: 10, leaseMs: 5_000, sweepMs: 1_000 });
	});
});
