import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';
import { connect, type ExecResult, type SshTarget } from '../../src/lib/server/ssh/connection';
import { SshError } from '../../src/lib/server/ssh/errors';
import { sh, type ShellCommand } from '../../src/lib/server/ssh/shell';
import { hostileStrings } from '../fixtures/hostile-strings';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';

/**
 * The same scenarios against a real OpenSSH test host and a simulated one, compared outcome by outcome,
 * so that the simulated demo and scale fleets cannot drift from what real hosts do.
 */
interface Subject {
	target(pinned?: string | null): SshTarget;
	fingerprint(): string;
	fault(kind: 'hang' | 'drop' | 'fail-health', command?: string): Promise<void>;
	clearFaults(): Promise<void>;
	changeHostKey(): Promise<string>;
	setRefusing(refusing: boolean): Promise<void>;
}

let bed: Testbed;
let sim: SimulatedHost;
const subjects: Record<'real' | 'simulated', Subject> = {} as never;

beforeAll(async () => {
	bed = await startTestbed({ hosts: 1, firstHost: 66 });
	const real = bed.hosts[0] as TestHost;
	subjects.real = {
		target: (pinned = real.hostKeyFingerprint) => ({
			host: real.address,
			port: real.port,
			username: 'root',
			privateKey: bed.clientPrivateKey,
			hostKeyFingerprint: pinned
		}),
		fingerprint: () => real.hostKeyFingerprint,
		fault: (kind, command) =>
			bed.setFault(
				real,
				kind === 'drop' ? 'drop-connection' : kind === 'fail-health' ? 'fail-health' : 'hang',
				command
			),
		clearFaults: () => bed.clearFaults(real),
		changeHostKey: () => bed.changeHostKey(real),
		setRefusing: (refusing) => (refusing ? bed.stopHost(real) : bed.startHost(real))
	};
	sim = await startSimulatedHost({
		name: 'sim-01',
		address: '127.0.1.67',
		authorizedKey: readFileSync(bed.clientPrivateKeyPath + '.pub', 'utf8')
	});
	subjects.simulated = {
		target: (pinned = sim.hostKeyFingerprint) => ({
			host: sim.address,
			port: sim.port,
			username: 'root',
			privateKey: bed.clientPrivateKey,
			hostKeyFingerprint: pinned
		}),
		fingerprint: () => sim.hostKeyFingerprint,
		fault: async (kind, command) => {
			if (kind === 'hang') sim.model.faults.hang = [command!];
			if (kind === 'drop') sim.model.faults.drop = [command!];
			if (kind === 'fail-health') sim.model.faults.failHealth = true;
		},
		clearFaults: async () => {
			sim.model.faults = {};
		},
		changeHostKey: async () => sim.changeHostKey(),
		setRefusing: (refusing) => sim.setRefusing(refusing)
	};
}, 60_000);

afterAll(async () => {
	await sim?.stop();
	await bed?.stop();
});

/** What an operator would see of a run: exit, output, deadline, cancel; durations left out. */
const outcome = (r: ExecResult) => ({
	exitCode: r.exitCode,
	stdout: r.stdout,
	stderr: r.stderr,
	timedOut: r.timedOut,
	cancelled: r.cancelled
});

async function run(
	subject: Subject,
	command: ShellCommand,
	opts: { deadlineMs?: number; cancelAfterMs?: number } = {}
) {
	const conn = await connect(subject.target());
	try {
		const abort = new AbortController();
		if (opts.cancelAfterMs) setTimeout(() => abort.abort(), opts.cancelAfterMs);
		return outcome(await conn.exec(command, { deadlineMs: opts.deadlineMs, signal: abort.signal }));
	} finally {
		conn.close();
	}
}

async function failure(p: Promise<unknown>): Promise<string> {
	return p.then(
		() => 'no failure',
		(e: unknown) => (e instanceof SshError ? e.failure : `not an SshError: ${String(e)}`)
	);
}

/** Runs a scenario on both subjects and insists they agree; returns the shared outcome for further checks. */
async function agree<T>(scenario: (s: Subject) => Promise<T>): Promise<T> {
	const real = await scenario(subjects.real);
	const simulated = await scenario(subjects.simulated);
	expect(simulated).toEqual(real);
	return real;
}

describe('simulated hosts behave like real ones', () => {
	it('exit codes, stdout and stderr', async () => {
		const r = await agree((s) => run(s, sh`echo one; echo two >&2; exit 3`));
		expect(r).toMatchObject({ exitCode: 3, stdout: 'one\n', stderr: 'two\n' });
	});

	it('&& and || and an unknown command', async () => {
		const r = await agree((s) => run(s, sh`false || echo recovered; true && echo done`));
		expect(r.stdout).toBe('recovered\ndone\n');
		expect((await agree((s) => run(s, sh`no-such-command-here`))).exitCode).toBe(127);
	});

	it('services through systemctl', async () => {
		const r = await agree((s) => run(s, sh`systemctl restart web && systemctl is-active web`));
		expect(r).toMatchObject({ exitCode: 0, stdout: 'active\n' });
	});

	it('values quoted by the sh tag arrive byte for byte', async () => {
		const sample = hostileStrings('/opt/canary').filter((_, i) => i % 20 === 0);
		for (const hostile of sample) {
			const r = await agree((s) => run(s, sh`printf '%s' ${hostile}`));
			expect(r.exitCode, JSON.stringify(hostile)).toBe(0);
		}
	});

	it('a deadline ends a command with timeout’s 124', async () => {
		const r = await agree((s) => run(s, sh`sleep 600`, { deadlineMs: 1000 }));
		expect(r).toMatchObject({ timedOut: true, exitCode: 124 });
	});

	it('a cancel ends a running command', async () => {
		const r = await agree(async (s) => {
			const o = await run(s, sh`sleep 600`, { cancelAfterMs: 300 });
			return { cancelled: o.cancelled, timedOut: o.timedOut };
		});
		expect(r).toEqual({ cancelled: true, timedOut: false });
	});

	it('faults: a hung command meets its deadline, a failed health check, a dropped connection', async () => {
		await agree(async (s) => {
			await s.fault('hang', 'systemctl');
			const hung = await run(s, sh`systemctl restart web`, { deadlineMs: 1000 });
			await s.clearFaults();
			await s.fault('fail-health');
			const health = await run(s, sh`systemctl is-active web`);
			await s.clearFaults();
			await s.fault('drop', 'systemctl');
			const conn = await connect(s.target());
			const dropped = await failure(conn.exec(sh`systemctl restart web`));
			await s.clearFaults();
			return { hung: { timedOut: hung.timedOut, exitCode: hung.exitCode }, health, dropped };
		});
	});

	it('host keys: unknown and changed keys are refused alike', async () => {
		await agree(async (s) => {
			const unknown = await failure(connect(s.target(null)));
			const pinned = s.fingerprint();
			const fresh = await s.changeHostKey();
			const changed = await failure(connect(s.target(pinned)));
			return { unknown, changed, keyChanged: fresh !== pinned };
		});
	});

	it('a host that refuses connections is unreachable', async () => {
		await agree(async (s) => {
			await s.setRefusing(true);
			const refused = await failure(connect(s.target()));
			await s.setRefusing(false);
			const back = await failure(connect(s.target()).then((c) => c.close()));
			return { refused, back };
		});
	});
});
