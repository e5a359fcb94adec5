import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addKey, blobOf, hasKey, removeKey } from '../../src/lib/server/keys/authorized-keys';
import { generateEd25519 } from '../../src/lib/server/keys/openssh';
import { connectionRunner, readAuthorizedKeys, writeScript } from '../../src/lib/server/keys/remote';
import { cloneOrigin, newOrigin, type SimOrigin } from '../../src/lib/server/sim/git';
import { requireReboot } from '../../src/lib/server/sim/host';
import { nodePaths } from '../../src/lib/server/sim/paths';
import { authorizedKeyOf, startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';
import { installSlots } from '../../src/lib/server/sim/slots';
import { connect, type ExecResult, type SshTarget } from '../../src/lib/server/ssh/connection';
import { SshError } from '../../src/lib/server/ssh/errors';
import { sh, type ShellCommand } from '../../src/lib/server/ssh/shell';
import { readNode } from '../../src/lib/server/sysupdates/scan';
import { hostileStrings } from '../fixtures/hostile-strings';
import { startTestbed, type Testbed, type TestHost, type TestPackage } from '../testbed/testbed.ts';

/**
 * The same scenarios against a real OpenSSH test host and a simulated one, compared outcome by outcome,
 * so that the simulated demo and scale fleets cannot drift from what real hosts do.
 */
interface Subject {
	target(pinned?: string | null): SshTarget;
	fingerprint(): string;
	fault(kind: 'hang' | 'drop' | 'fail-health', command?: string): Promise<void>;
	clearFaults(): Promise<void>;
	requireReboot(packages: string[]): Promise<void>;
	changeHostKey(): Promise<string>;
	setRefusing(refusing: boolean): Promise<void>;
	setPackages(packages: TestPackage[]): Promise<void>;
	/** A process (`sleep`) takes the dpkg frontend lock, as unattended-upgrades does; returns its pid. */
	holdDpkgLock(): Promise<number>;
	releaseDpkgLock(): Promise<void>;
}

let bed: Testbed;
let sim: SimulatedHost;
const simOrigins = new Map<string, SimOrigin>();
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
		requireReboot: (packages) => bed.requireReboot(real, packages),
		changeHostKey: () => bed.changeHostKey(real),
		setRefusing: (refusing) => (refusing ? bed.stopHost(real) : bed.startHost(real)),
		setPackages: (packages) => bed.setPackages(real, packages),
		holdDpkgLock: async () => {
			const conn = await connect(subjects.real.target());
			try {
				const r = await conn.exec(
					sh`setsid sh -c ${'echo $$ >/var/lib/flotilla-testbed/apt/lock-frontend; exec sleep 600'} >/dev/null 2>&1 & sleep 0.3; cat /var/lib/flotilla-testbed/apt/lock-frontend`
				);
				return Number(r.stdout.trim());
			} finally {
				conn.close();
			}
		},
		releaseDpkgLock: async () => {
			const conn = await connect(subjects.real.target());
			try {
				await conn.exec(
					sh`kill "$(cat /var/lib/flotilla-testbed/apt/lock-frontend)"; rm -f /var/lib/flotilla-testbed/apt/lock-frontend`
				);
			} finally {
				conn.close();
			}
		}
	};
	// The simulated host starts as the real one did: the same commits per role, the same images in its
	// slots, the same certificate file.
	const { model } = (sim = await startSimulatedHost({
		name: 'sim-01',
		address: '127.0.1.67',
		authorizedKey: readFileSync(bed.clientPrivateKeyPath + '.pub', 'utf8')
	}));
	for (const role of bed.roles) {
		const origin = newOrigin(
			role,
			(await bed.originCommits(role)).map((sha) => ({ sha }))
		);
		simOrigins.set(role, origin);
		model.repos.set(nodePaths.repo(role), cloneOrigin(origin));
	}
	const slotImage = (slot: string) => readFileSync(`${real.root}/boot/flotilla/slot-${slot}.img`, 'utf8');
	installSlots(model, { a: slotImage('a'), b: slotImage('b') });
	model.files.set(nodePaths.tlsCert, readFileSync(`${real.root}${nodePaths.tlsCert}`, 'utf8'));
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
		requireReboot: async (packages) => requireReboot(sim.model, packages),
		changeHostKey: async () => sim.changeHostKey(),
		setRefusing: (refusing) => sim.setRefusing(refusing),
		setPackages: async (packages) => {
			sim.model.apt.packages = packages.map((p) => ({ ...p, suites: [...p.suites] }));
		},
		holdDpkgLock: async () => {
			sim.model.apt.lockHolder = { pid: 4242, comm: 'sleep' };
			return 4242;
		},
		releaseDpkgLock: async () => {
			sim.model.apt.lockHolder = null;
		}
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

/** Runs commands one after the other on one connection; each outcome as an operator would see it. */
async function runAll(subject: Subject, commands: ShellCommand[]) {
	const conn = await connect(subject.target());
	try {
		const outcomes = [];
		for (const command of commands) outcomes.push(outcome(await conn.exec(command)));
		return outcomes;
	} finally {
		conn.close();
	}
}

/** Polls until the subject accepts SSH again after a reboot. */
async function waitUntilUp(subject: Subject, timeoutMs: number): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const up = await connect(subject.target(), { readyTimeoutMs: 2000 }).then(
			(conn) => (conn.close(), true),
			() => false
		);
		if (up) return;
		if (Date.now() > deadline) throw new Error('the host did not come back after its reboot');
		await new Promise((r) => setTimeout(r, 200));
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

	it('git checkouts per role: rev-parse, status, fetch, checkout --detach, install', async () => {
		const repo = nodePaths.repo('backend');
		const next = await bed.addCommit('backend');
		simOrigins.get('backend')!.commits.push({ sha: next });
		const before = (await bed.originCommits('backend')).at(-2)!;
		const unknown = 'f'.repeat(40);
		const outcomes = await agree((s) =>
			runAll(s, [
				sh`git -C ${repo} rev-parse HEAD`,
				sh`git -C ${repo} status --porcelain`,
				// Not fetched yet: the new commit is unknown to the checkout.
				sh`git -C ${repo} checkout --quiet --detach ${next}`,
				sh`git -C ${repo} fetch --quiet origin`,
				sh`git -C ${repo} checkout --quiet --detach ${next}`,
				sh`git -C ${repo} rev-parse HEAD`,
				sh`sh ${repo}/install.sh`,
				sh`git -C ${repo} status --porcelain`,
				sh`git -C ${repo} checkout --quiet --detach ${unknown}`,
				sh`git -C ${'/opt/no-such-role'} rev-parse HEAD`
			])
		);
		const ok = (stdout: string) => ({ exitCode: 0, stdout, stderr: '', timedOut: false, cancelled: false });
		const fatal = (stderr: string) => ({ exitCode: 128, stdout: '', stderr, timedOut: false, cancelled: false });
		expect(outcomes).toEqual([
			ok(`${before}\n`),
			ok(''),
			fatal(`fatal: reference is not a tree: ${next}\n`),
			ok(''),
			ok(''),
			ok(`${next}\n`),
			ok('installed backend 4\n'),
			ok(''),
			fatal(`fatal: reference is not a tree: ${unknown}\n`),
			fatal(`fatal: cannot change to '/opt/no-such-role': No such file or directory\n`)
		]);
		expect(await bed.checkedOutCommit(bed.hosts[0]!, 'backend')).toBe(next);
		expect(sim.model.repos.get(repo)?.head).toBe(next);
	});

	it('certificates: openssl x509 on the certificate file, and on a missing one', async () => {
		const outcomes = await agree(async (s) => {
			const [cert, missing] = await runAll(s, [
				sh`openssl x509 -in ${nodePaths.tlsCert} -noout -fingerprint -sha256 -enddate -subject -issuer -ext subjectAltName`,
				sh`openssl x509 -in ${'/etc/flotilla/tls/missing.crt'} -noout -fingerprint -sha256`
			]);
			// openssl's own error lines carry code addresses; the first line is what an operator reads.
			return { cert: cert!, missing: { exitCode: missing!.exitCode, firstLine: missing!.stderr.split('\n')[0] } };
		});
		const served = await bed.servedCertificate(bed.hosts[0]!);
		expect(outcomes.cert).toMatchObject({ exitCode: 0, stderr: '' });
		expect(outcomes.cert.stdout.split('\n')).toEqual([
			`sha256 Fingerprint=${served.fingerprint}`,
			expect.stringMatching(/^notAfter=\w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} GMT$/),
			`subject=CN = ${bed.hosts[0]!.name}`,
			'issuer=CN = Flotilla testbed CA',
			'X509v3 Subject Alternative Name: ',
			`    ${served.subjectAltName}`,
			''
		]);
		expect(outcomes.missing).toEqual({
			exitCode: 1,
			firstLine: 'Could not open file or uri for loading certificate from /etc/flotilla/tls/missing.crt'
		});
	});

	it('A/B slots through the appliance slot helper', async () => {
		const outcomes = await agree(async (s) => {
			const steps = await runAll(s, [
				sh`flotilla-slot status`,
				sh`flotilla-slot standby`,
				sh`flotilla-slot path ${'b'}`,
				sh`sha256sum ${'/boot/flotilla/slot-b.img'}`,
				sh`flotilla-slot set-next ${'c'}`,
				sh`flotilla-slot set-next ${'b'}`,
				sh`flotilla-slot gate`,
				sh`flotilla-slot revert`,
				sh`flotilla-slot status`
			]);
			await s.fault('fail-health');
			const [gateFailed] = await runAll(s, [sh`flotilla-slot commit`]);
			await s.clearFaults();
			return [...steps, gateFailed!];
		});
		expect(outcomes.map((o) => [o.exitCode, o.stdout, o.stderr])).toEqual([
			[0, 'active=a\nnext=a\ngood=a\ntries=0\nboots=0\n', ''],
			[0, 'b\n', ''],
			[0, '/boot/flotilla/slot-b.img\n', ''],
			[0, expect.stringMatching(/^[0-9a-f]{64} {2}\/boot\/flotilla\/slot-b\.img\n$/), ''],
			[1, '', "flotilla-slot: not a slot: 'c' (a or b)\n"],
			[0, 'next boot: slot b\n', ''],
			[0, 'gate: 10-appliance ok\n', ''],
			[0, 'next boot: slot a\n', ''],
			[0, 'active=a\nnext=a\ngood=a\ntries=0\nboots=0\n', ''],
			[1, 'gate: 10-appliance failed\n', 'flotilla-slot: health gate failed: slot a not committed\n']
		]);
	});

	it('reboot-required, and a reboot into the next slot that clears it', async () => {
		const outcomes = await agree(async (s) => {
			const before = await runAll(s, [sh`test -e ${nodePaths.rebootRequired}`]);
			await s.requireReboot(['linux-image-6.1.0-29-amd64', 'libc6']);
			const required = await runAll(s, [
				sh`test -e ${nodePaths.rebootRequired}`,
				sh`cat ${nodePaths.rebootRequiredPackages}`,
				sh`flotilla-slot set-next ${'b'}`,
				sh`reboot`
			]);
			await new Promise((r) => setTimeout(r, 1000));
			await waitUntilUp(s, 20_000);
			const after = await runAll(s, [sh`test -e ${nodePaths.rebootRequired}`, sh`flotilla-slot status`]);
			return [...before, ...required, ...after].map((o) => [o.exitCode, o.stdout, o.stderr]);
		});
		expect(outcomes).toEqual([
			[1, '', ''],
			[0, '', ''],
			[0, 'linux-image-6.1.0-29-amd64\nlibc6\n', ''],
			[0, 'next boot: slot b\n', ''],
			[0, 'Rebooting.\n', ''],
			[1, '', ''],
			[0, 'active=b\nnext=b\ngood=a\ntries=1\nboots=1\n', '']
		]);
	}, 60_000);

	it('apt: list, holds, simulate, security-only and full upgrades, reboot-required, needrestart', async () => {
		const packages: TestPackage[] = [
			{
				name: 'curl',
				arch: 'amd64',
				installed: '7.88.1-10+deb12u7',
				candidate: '7.88.1-10+deb12u8',
				suites: ['bookworm']
			},
			{
				name: 'libc6',
				arch: 'amd64',
				installed: '2.36-9+deb12u8',
				candidate: '2.36-9+deb12u9',
				suites: ['bookworm-security', 'bookworm']
			},
			{
				name: 'openssl',
				arch: 'amd64',
				installed: '3.0.14-1~deb12u2',
				candidate: '3.0.15-1~deb12u1',
				suites: ['bookworm-security']
			},
			{
				name: 'tzdata',
				arch: 'all',
				installed: '2024a-0+deb12u1',
				candidate: '2024b-0+deb12u1',
				suites: ['bookworm-updates']
			},
			{ name: 'vim', arch: 'amd64', installed: '2:9.0.1378-2', candidate: '2:9.0.1378-2', suites: ['bookworm'] }
		];
		const apt = sh`DEBIAN_FRONTEND=noninteractive apt-get -y -o ${'DPkg::Lock::Timeout=5'} -o ${'Dpkg::Options::=--force-confold'}`;
		const outcomes = await agree(async (s) => {
			await s.setPackages(packages);
			return runAll(s, [
				sh`LANG=C apt list --upgradable`,
				sh`apt-mark hold ${'curl'}`,
				sh`LANG=C apt-get -s upgrade`,
				sh`${apt} install --only-upgrade -- ${'openssl'}`,
				sh`needrestart -b`,
				sh`${apt} upgrade`,
				sh`LANG=C apt list --upgradable`,
				sh`cat ${nodePaths.rebootRequiredPackages}`,
				sh`needrestart -b`,
				sh`apt-mark showhold`,
				sh`${apt} install -- ${'no-such-package'}`
			]);
		});
		expect(outcomes.map((o) => o.exitCode)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100]);
		expect(outcomes[0]!.stdout).toBe(
			[
				'Listing...',
				'curl/bookworm 7.88.1-10+deb12u8 amd64 [upgradable from: 7.88.1-10+deb12u7]',
				'libc6/bookworm-security,bookworm 2.36-9+deb12u9 amd64 [upgradable from: 2.36-9+deb12u8]',
				'openssl/bookworm-security 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]',
				'tzdata/bookworm-updates 2024b-0+deb12u1 all [upgradable from: 2024a-0+deb12u1]',
				''
			].join('\n')
		);
		expect(outcomes[2]!.stdout).toContain('The following packages have been kept back:\n  curl\n');
		expect(outcomes[2]!.stdout).toContain(
			'Inst libc6 [2.36-9+deb12u8] (2.36-9+deb12u9 Debian-Security:12/bookworm-security [amd64])\n'
		);
		expect(outcomes[3]!.stdout).toContain('Setting up openssl:amd64 (3.0.15-1~deb12u1) ...\n');
		expect(outcomes[4]!.stdout).toBe(
			'NEEDRESTART-VER: 3.6\nNEEDRESTART-KSTA: 1\nNEEDRESTART-SVC: cron.service\nNEEDRESTART-SVC: ssh.service\n'
		);
		expect(outcomes[5]!.stdout).toContain('2 upgraded, 0 newly installed, 0 to remove and 1 not upgraded.\n');
		expect(outcomes[6]!.stdout).toBe(
			'Listing...\ncurl/bookworm 7.88.1-10+deb12u8 amd64 [upgradable from: 7.88.1-10+deb12u7]\n'
		);
		expect(outcomes[7]!.stdout).toBe('libc6\n');
		expect(outcomes[9]!.stdout).toBe('curl\n');
		expect(outcomes[10]!.stderr).toBe('E: Unable to locate package no-such-package\n');
		expect(await bed.packages(bed.hosts[0]!)).toEqual(
			packages.map((p) => (p.name === 'curl' ? p : { ...p, installed: p.candidate }))
		);
	});

	it('apt waits for a held dpkg lock, and fails with apt’s reason when it is never released', async () => {
		const outcomes = await agree(async (s) => {
			await s.setPackages([
				{ name: 'openssl', arch: 'amd64', installed: '3.0.14-1', candidate: '3.0.15-1', suites: ['bookworm-security'] }
			]);
			const pid = await s.holdDpkgLock();
			const [held] = await runAll(s, [sh`apt-get -y -o ${'DPkg::Lock::Timeout=1'} upgrade`]);
			const waiting = runAll(s, [sh`apt-get -y -o ${'DPkg::Lock::Timeout=30'} upgrade`]);
			await new Promise((r) => setTimeout(r, 1500));
			await s.releaseDpkgLock();
			const [waited] = await waiting;
			const anonymous = (text: string) => text.replaceAll(String(pid), 'PID');
			return {
				held: { exitCode: held!.exitCode, stdout: anonymous(held!.stdout), stderr: anonymous(held!.stderr) },
				waited: {
					exitCode: waited!.exitCode,
					waitedFirst: /Waiting for cache lock: .* held by process PID \(sleep\)\.\.\. 0s/.test(
						anonymous(waited!.stdout)
					),
					installed: waited!.stdout.includes('Setting up openssl:amd64 (3.0.15-1) ...')
				}
			};
		});
		expect(outcomes.held.exitCode).toBe(100);
		expect(outcomes.held.stderr).toBe(
			[
				'E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process PID (sleep)',
				'N: Be aware that removing the lock file is not a solution and may break your system.',
				'E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?',
				''
			].join('\n')
		);
		expect(outcomes.waited).toEqual({ exitCode: 0, waitedFirst: true, installed: true });
	}, 60_000);

	it('a system update scan reads the same from both', async () => {
		const found = await agree(async (s) => {
			await s.setPackages([
				{
					name: 'libc6',
					arch: 'amd64',
					installed: '2.36-9+deb12u8',
					candidate: '2.36-9+deb12u9',
					suites: ['bookworm-security']
				},
				{
					name: 'tzdata',
					arch: 'all',
					installed: '2024a-0+deb12u1',
					candidate: '2024b-0+deb12u1',
					suites: ['bookworm-updates']
				}
			]);
			await s.requireReboot(['linux-image-6.1.0-29-amd64']);
			const conn = await connect(s.target());
			try {
				await conn.exec(sh`apt-mark hold ${'tzdata'}`);
				// The exit codes readNode allows it judges itself; the rest exit 0 on both hosts here.
				return await readNode(
					{ exec: (command, options) => conn.exec(command, { deadlineMs: options?.deadlineMs }) },
					true
				);
			} finally {
				conn.close();
			}
		});
		expect(found).toEqual({
			packages: [
				expect.objectContaining({ name: 'libc6', candidate: '2.36-9+deb12u9', security: true }),
				expect.objectContaining({ name: 'tzdata', candidate: '2024b-0+deb12u1', security: false })
			],
			rebootRequired: true,
			rebootPackages: ['linux-image-6.1.0-29-amd64'],
			// What earlier scenarios left (an upgraded libc6, a hold) shows too: the two must agree on it.
			servicesToRestart: expect.any(Array),
			held: expect.arrayContaining(['tzdata'])
		});
	});

	it('authorized_keys as the key rotation reads and writes it: an added key logs in, a removed one no longer does', async () => {
		const clientBlob = blobOf(authorizedKeyOf(bed.clientPrivateKey));
		const base64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
		const shared = await agree(async (s) => {
			const fresh = generateEd25519('conformance');
			const login = (privateKey: string) =>
				failure(connect({ ...s.target(), privateKey }).then((conn) => conn.close()));
			const conn = await connect(s.target());
			try {
				const exec = connectionRunner(conn);
				const before = await readAuthorizedKeys(exec);
				const added = addKey(before.content, fresh.publicKey, 'flotilla:primary:conformance');
				const add = outcome(await exec(writeScript(before.hash, base64(added))));
				const freshIn = await login(fresh.privateKey);
				// Written over a file that changed since it was read: refused, the file left alone.
				const stale = outcome(await exec(writeScript(before.hash, base64(before.content))));
				const withFresh = await readAuthorizedKeys(exec);
				const remove = outcome(await exec(writeScript(withFresh.hash, base64(removeKey(added, clientBlob)))));
				const oldIn = await login(bed.clientPrivateKey);
				// Put back through the new key, the only one that still logs in.
				const viaFresh = await connect({ ...s.target(), privateKey: fresh.privateKey });
				const last = await readAuthorizedKeys(connectionRunner(viaFresh));
				const restore = outcome(await connectionRunner(viaFresh)(writeScript(last.hash, base64(before.content))));
				viaFresh.close();
				return {
					exists: before.exists,
					listsClient: hasKey(before.content, clientBlob),
					add,
					freshIn,
					stale,
					staleKeptFresh: hasKey(withFresh.content, blobOf(fresh.publicKey)),
					remove,
					oldIn,
					restore,
					freshAfterRestore: await login(fresh.privateKey),
					oldAfterRestore: await login(bed.clientPrivateKey)
				};
			} finally {
				conn.close();
			}
		});
		expect(shared).toMatchObject({
			exists: true,
			listsClient: true,
			add: { exitCode: 0 },
			freshIn: 'no failure',
			stale: { exitCode: 3 },
			staleKeptFresh: true,
			remove: { exitCode: 0 },
			oldIn: 'auth',
			restore: { exitCode: 0 },
			freshAfterRestore: 'auth',
			oldAfterRestore: 'no failure'
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
