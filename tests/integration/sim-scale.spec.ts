/**
 * Simulated nodes at fleet scale: 2,000 in-process SSH hosts, every one reached through the console's own
 * SSH layer (pinned host key, exec wrapper with deadline) at 200 connections at a time. Each host must answer
 * with its own name over a connection that verified its own key, and when it is over nothing may be left:
 * no open connection on either side, no listener, no unhandled error. How fast this is belongs to a
 * benchmark; the test only needs it to stay well inside CI's patience.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { authorizedKeyOf, newHostKey, startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';
import { connect, type SshConnection } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';

const fleetSize = 2000;
const concurrency = 200;
// All hosts share one loopback address, each on its own port: 127.0.1.80 is used by no other test.
const address = '127.0.1.80';

const clientKey = newHostKey();
const authorizedKey = authorizedKeyOf(clientKey);

let hosts: SimulatedHost[] = [];
const unhandled: unknown[] = [];
const record = (error: unknown) => unhandled.push(error);
let baseline: Record<string, number>;

/** Open handles of the kinds this test creates, by kind. */
function handles(): Record<string, number> {
	const counts: Record<string, number> = { TCPSocketWrap: 0, TCPServerWrap: 0 };
	for (const kind of process.getActiveResourcesInfo()) if (kind in counts) counts[kind]!++;
	return counts;
}

async function pool<T, R>(
	items: T[],
	limit: number,
	work: (item: T) => Promise<R>
): Promise<PromiseSettledResult<R>[]> {
	const results: PromiseSettledResult<R>[] = new Array(items.length);
	let next = 0;
	const worker = async () => {
		while (next < items.length) {
			const i = next++;
			results[i] = await work(items[i]!).then(
				(value) => ({ status: 'fulfilled', value }) as const,
				(reason: unknown) => ({ status: 'rejected', reason }) as const
			);
		}
	};
	await Promise.all(Array.from({ length: limit }, worker));
	return results;
}

async function until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
	const deadline = Date.now() + timeoutMs;
	while (!condition()) {
		if (Date.now() > deadline) return false;
		await new Promise((r) => setTimeout(r, 50));
	}
	return true;
}

beforeAll(async () => {
	process.on('uncaughtException', record);
	process.on('unhandledRejection', record);
	baseline = handles();
	hosts = await Promise.all(
		Array.from({ length: fleetSize }, (_, i) =>
			startSimulatedHost({ name: `sim-${String(i + 1).padStart(4, '0')}`, address, authorizedKey })
		)
	);
}, 60_000);

afterAll(async () => {
	await Promise.all(hosts.map((h) => h.stop()));
	process.off('uncaughtException', record);
	process.off('unhandledRejection', record);
});

it(`connects to ${fleetSize} simulated hosts, ${concurrency} at a time, and each answers as itself`, async () => {
	expect(new Set(hosts.map((h) => h.port)).size).toBe(fleetSize);
	const connections: SshConnection[] = [];
	let open = 0;
	let mostOpen = 0;
	const outcomes = await pool(hosts, concurrency, async (host) => {
		open++;
		mostOpen = Math.max(mostOpen, open);
		try {
			const conn = await connect({
				host: host.address,
				port: host.port,
				username: 'root',
				privateKey: clientKey,
				hostKeyFingerprint: host.hostKeyFingerprint
			});
			connections.push(conn);
			try {
				const result = await conn.exec(sh`hostname && systemctl is-active ${'app'} || echo ${host.name}`, {
					deadlineMs: 30_000
				});
				return { name: host.name, fingerprint: conn.fingerprint, result };
			} finally {
				conn.close();
			}
		} finally {
			open--;
		}
	});

	const failures = outcomes.flatMap((o, i) =>
		o.status === 'rejected' ? [`${hosts[i]!.name}: ${String(o.reason)}`] : []
	);
	expect(failures).toEqual([]);
	expect(mostOpen).toBe(concurrency);
	for (const [i, o] of outcomes.entries()) {
		if (o.status !== 'fulfilled') continue;
		const host = hosts[i]!;
		expect(o.value.fingerprint, host.name).toBe(host.hostKeyFingerprint);
		// hostname answers; the unit was never started, so is-active says inactive (3) and the || runs.
		expect(
			{ exitCode: o.value.result.exitCode, stdout: o.value.result.stdout, stderr: o.value.result.stderr },
			host.name
		).toEqual({ exitCode: 0, stdout: `${host.name}\ninactive\n${host.name}\n`, stderr: '' });
	}

	// Nothing leaks: every client saw its connection close, every host saw its side go.
	expect(connections).toHaveLength(fleetSize);
	expect(await until(() => connections.every((c) => c.closed), 10_000)).toBe(true);
	expect(await until(() => hosts.every((h) => h.openConnections === 0), 10_000)).toBe(true);
	expect(await until(() => handles().TCPSocketWrap === baseline.TCPSocketWrap, 10_000)).toBe(true);
	expect(handles().TCPServerWrap).toBe(baseline.TCPServerWrap! + fleetSize);
	await Promise.all(hosts.map((h) => h.stop()));
	expect(await until(() => handles().TCPServerWrap === baseline.TCPServerWrap, 10_000)).toBe(true);
	expect(unhandled).toEqual([]);
}, 120_000);
