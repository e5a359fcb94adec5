/**
 * The SSH layer against a fleet: 50 real OpenSSH hosts, 50 connections open at once, a short command
 * sequence on every host concurrently. Each host must answer with its own identity (a token written into
 * its own /opt, which only that host's mount namespace shows), over a connection that verified that host's
 * pinned key. How fast this is belongs to `npm run bench:ssh`, not here.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { connect, type ExecResult, type SshConnection } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';

const fleetSize = 50;
const identityFile = 'flotilla-fleet-identity';

let bed: Testbed;
const identities = new Map<TestHost, string>();

beforeAll(async () => {
	bed = await startTestbed({ hosts: fleetSize, firstHost: 100 });
	await Promise.all(
		bed.hosts.map(async (host) => {
			const identity = `${host.name} ${randomUUID()}`;
			identities.set(host, identity);
			await writeFile(join(host.root, 'opt', identityFile), `${identity}\n`);
		})
	);
}, 120_000);
afterAll(() => bed?.stop());

interface HostOutcome {
	host: TestHost;
	fingerprint: string;
	results: ExecResult[];
}

it('opens 50 connections at once and every host answers its own command sequence', async () => {
	const opened = await Promise.allSettled(
		bed.hosts.map((host) =>
			connect({
				host: host.address,
				port: host.port,
				username: host.user,
				privateKey: bed.clientPrivateKey,
				hostKeyFingerprint: host.hostKeyFingerprint
			})
		)
	);
	const connections = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
	try {
		expect(
			opened.flatMap((o, i) => (o.status === 'rejected' ? [`${bed.hosts[i]!.name}: ${String(o.reason)}`] : []))
		).toEqual([]);
		// All 50 are open now; only then does any of them run a command.
		expect(connections.filter((conn) => !conn.closed)).toHaveLength(fleetSize);

		const sequence = (conn: SshConnection) => [
			() => conn.exec(sh`cat /opt/${identityFile}`, { deadlineMs: 20_000 }),
			() => conn.exec(sh`systemctl restart web`, { deadlineMs: 20_000 }),
			() => conn.exec(sh`systemctl is-active web && uname -s`, { deadlineMs: 20_000 })
		];
		const outcomes = await Promise.allSettled(
			connections.map(async (conn, i): Promise<HostOutcome> => {
				const results: ExecResult[] = [];
				for (const step of sequence(conn)) results.push(await step());
				return { host: bed.hosts[i]!, fingerprint: conn.fingerprint, results };
			})
		);

		expect(
			outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`${bed.hosts[i]!.name}: ${String(o.reason)}`] : []))
		).toEqual([]);
		const answered = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
		expect(answered).toHaveLength(fleetSize);
		for (const { host, fingerprint, results } of answered) {
			expect(fingerprint, host.name).toBe(host.hostKeyFingerprint);
			expect(
				results.map((r) => ({ exitCode: r.exitCode, timedOut: r.timedOut, stderr: r.stderr })),
				host.name
			).toEqual(Array(3).fill({ exitCode: 0, timedOut: false, stderr: '' }));
			expect(
				results.map((r) => r.stdout),
				host.name
			).toEqual([`${identities.get(host)}\n`, '', 'active\nLinux\n']);
		}
		// The stand-in on each host logged the two systemctl calls of that host's own sequence, nothing else.
		const logs = await Promise.all(bed.hosts.map((host) => bed.commandLog(host)));
		for (const [i, log] of logs.entries()) {
			expect(
				log.map((line) => line.split(' ').slice(1).join(' ')),
				bed.hosts[i]!.name
			).toEqual(['systemctl restart web', 'systemctl is-active web']);
		}
		// Every fingerprint was a different host's key: no connection landed on another host.
		expect(new Set(answered.map((a) => a.fingerprint)).size).toBe(fleetSize);
	} finally {
		for (const conn of connections) conn.close();
	}
}, 60_000);
