import { execFile, spawn } from 'node:child_process';
import { copyFile, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostPaths, startTestbed, type TestHost, type Testbed } from './testbed.ts';

const run = promisify(execFile);

interface Result {
	code: number | null;
	stdout: string;
	stderr: string;
	ms: number;
}

let testbed: Testbed;

/** The real OpenSSH client, strict about host keys, as an operator's shell would use it. */
function ssh(host: TestHost, command: string, knownHosts = testbed.knownHostsPath): Promise<Result> {
	const started = Date.now();
	const child = spawn('ssh', [
		'-F',
		'/dev/null',
		'-i',
		testbed.clientPrivateKeyPath,
		'-o',
		'IdentitiesOnly=yes',
		'-o',
		'BatchMode=yes',
		'-o',
		`UserKnownHostsFile=${knownHosts}`,
		'-o',
		'StrictHostKeyChecking=yes',
		'-o',
		'ConnectTimeout=5',
		`${host.user}@${host.address}`,
		command
	]);
	let stdout = '';
	let stderr = '';
	child.stdout.on('data', (data) => (stdout += data));
	child.stderr.on('data', (data) => (stderr += data));
	return new Promise((resolve, reject) => {
		child.once('error', reject);
		child.once('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started }));
	});
}

/** What `ssh-keyscan` sees on the wire, fingerprinted by `ssh-keygen -lf -`. */
async function scannedFingerprint(host: TestHost): Promise<string> {
	const { stdout } = await run('sh', [
		'-c',
		'ssh-keyscan -t ed25519 "$1" 2>/dev/null | ssh-keygen -lf -',
		'sh',
		host.address
	]);
	const fingerprint = stdout.split(' ')[1];
	if (!fingerprint) throw new Error(`ssh-keyscan found no key on ${host.address}`);
	return fingerprint;
}

function tcpConnect(host: TestHost): Promise<'open' | string> {
	return new Promise((resolve) => {
		const socket = connect({ host: host.address, port: host.port });
		socket.once('connect', () => {
			socket.destroy();
			resolve('open');
		});
		socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
	});
}

async function waitUntilAnswering(host: TestHost, timeoutMs: number): Promise<Result> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const result = await ssh(host, 'echo up');
		if (result.code === 0 || Date.now() > deadline) return result;
		await sleep(200);
	}
}

function sleep(ms: number): Promise<void> {
	return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Processes of any kind whose mount namespace still holds one of the testbed's bind mounts. */
async function processesWithTestbedMounts(dir: string): Promise<number[]> {
	const marker = basename(dir);
	const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry));
	const holding = await Promise.all(
		pids.map(async (pid) =>
			(await readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => '')).includes(marker) ? Number(pid) : 0
		)
	);
	return holding.filter((pid) => pid !== 0);
}

async function testbedSshdProcesses(dir: string): Promise<string[]> {
	const { stdout } = await run('sh', ['-c', 'pgrep -af sshd || true']);
	return stdout.split('\n').filter((line) => line.includes(dir));
}

describe('testbed of real OpenSSH hosts', () => {
	beforeAll(async () => {
		testbed = await startTestbed({ hosts: 3 });
	});

	afterAll(async () => {
		await testbed?.stop();
	});

	it('starts each host on its own address with its own host key', async () => {
		const [a, b, c] = testbed.hosts;
		expect([a?.address, b?.address, c?.address]).toEqual(['127.0.1.10', '127.0.1.11', '127.0.1.12']);
		expect(testbed.clientPrivateKey).toContain('BEGIN OPENSSH PRIVATE KEY');
		for (const host of testbed.hosts) {
			const result = await ssh(host, 'echo "$SSH_CONNECTION"');
			expect(result).toMatchObject({ code: 0, stderr: '' });
			// SSH_CONNECTION ends with the server's address and port: the host answered on its own address.
			expect(result.stdout).toMatch(new RegExp(` ${host.address.replaceAll('.', '\\.')} 22\n$`));
			expect(await scannedFingerprint(host)).toBe(host.hostKeyFingerprint);
		}
		expect(new Set(testbed.hosts.map((host) => host.hostKeyFingerprint)).size).toBe(3);
	});

	it('refuses to start a host on an address another server holds', async () => {
		await expect(startTestbed({ hosts: 1, firstHost: 10 })).rejects.toThrow(
			/host01 could not start sshd on 127\.0\.1\.10:22[\s\S]*Address already in use/
		);
		expect(await ssh(testbed.hosts[0] as TestHost, 'echo up')).toMatchObject({ code: 0, stdout: 'up\n' });
	});

	it('gives each host its own /opt, kept under its root directory', async () => {
		const [a, b] = testbed.hosts as [TestHost, TestHost];
		expect((await ssh(a, 'echo only-on-a > /opt/probe')).code).toBe(0);
		expect(await readFile(join(a.root, 'opt/probe'), 'utf8')).toBe('only-on-a\n');
		const onB = await ssh(b, 'cat /opt/probe');
		expect(onB.code).toBe(1);
		expect(onB.stderr).toContain('No such file');
		await expect(stat('/opt/probe')).rejects.toThrow('ENOENT');
	});

	it('gives each host its own /etc: accounts, unit files and folders there stay on that host', async () => {
		const [a, b] = testbed.hosts as [TestHost, TestHost];
		const made = await ssh(
			a,
			'useradd --system --no-create-home --shell /usr/sbin/nologin tbprobe && mkdir /etc/tbprobe && chown root:tbprobe /etc/tbprobe && stat -c "%U:%G" /etc/tbprobe'
		);
		expect(made).toMatchObject({ code: 0, stdout: 'root:tbprobe\n' });
		expect((await ssh(b, 'id -u tbprobe; test -e /etc/tbprobe')).code).not.toBe(0);
		await expect(stat('/etc/tbprobe')).rejects.toThrow('ENOENT');
		expect((await run('sh', ['-c', 'id -u tbprobe || echo none'])).stdout).toContain('none');
	});

	it('logs systemctl calls and keeps unit state', async () => {
		const host = testbed.hosts[0] as TestHost;
		const result = await ssh(host, 'systemctl restart web && systemctl is-active web');
		expect(result).toMatchObject({ code: 0, stdout: 'active\n' });
		const log = await testbed.commandLog(host);
		expect(log).toContainEqual(expect.stringMatching(/^\d{13} systemctl restart web$/));
		expect(log.at(-1)).toMatch(/^\d{13} systemctl is-active web$/);
		expect((await ssh(host, 'systemctl stop web; systemctl is-active web')).stdout).toBe('inactive\n');
		const enabled = await ssh(host, 'systemctl is-enabled web; systemctl enable web && systemctl is-enabled web');
		expect(enabled.stdout).toBe('disabled\nenabled\n');
		expect((await ssh(host, 'systemctl disable web; systemctl is-enabled --quiet web; echo $?')).stdout).toBe('1\n');
	});

	it('answers apt like an up-to-date Debian host', async () => {
		const host = testbed.hosts[1] as TestHost;
		const result = await ssh(host, 'apt-get -y update && apt-get -y upgrade && apt list --upgradable');
		expect(result.code).toBe(0);
		expect(result.stdout).toContain('0 upgraded, 0 newly installed');
		expect(result.stdout.trim().split('\n').at(-1)).toBe('Listing...');
		expect((await testbed.commandLog(host)).map((line) => line.replace(/^\d+ /, ''))).toEqual([
			'apt-get -y update',
			'apt-get -y upgrade',
			'apt list --upgradable'
		]);
	});

	it('hangs, fails and drops the connection on the faults set', async () => {
		const host = testbed.hosts[2] as TestHost;
		await testbed.setFault(host, 'hang', 'systemctl');
		const hung = await ssh(
			host,
			'timeout 2 systemctl restart web; echo "exit $?"; apt-get update >/dev/null; echo "apt $?"'
		);
		expect(hung.stdout).toBe('exit 124\napt 0\n');
		expect(hung.ms).toBeGreaterThanOrEqual(2000);
		expect((await ssh(host, 'pgrep -c sleep || true')).stdout).toBe('0\n');

		await testbed.clearFaults(host);
		await testbed.setFault(host, 'fail-step', 'apt-get');
		const failed = await ssh(host, 'apt-get upgrade');
		expect(failed).toMatchObject({ code: 1, stdout: '' });
		expect(failed.stderr).toContain('apt-get: failed');

		await testbed.clearFaults(host);
		await testbed.setFault(host, 'drop-connection');
		const dropped = await ssh(host, 'echo before; systemctl restart web; echo after');
		expect(dropped.code).toBe(255);
		expect(dropped.stdout).toBe('before\n');
		await testbed.clearFaults(host);
		expect((await ssh(host, 'echo still serving')).stdout).toBe('still serving\n');
	});

	it('reports failed health and slow output on the faults set', async () => {
		const host = testbed.hosts[2] as TestHost;
		await testbed.setFault(host, 'fail-health');
		const unhealthy = await ssh(host, 'systemctl start web; systemctl is-active web');
		expect(unhealthy).toMatchObject({ code: 3, stdout: 'failed\n' });
		await testbed.clearFaults(host);
		expect(await ssh(host, 'systemctl is-active web')).toMatchObject({ code: 0, stdout: 'active\n' });

		await testbed.setFault(host, 'slow-output');
		const slow = await ssh(host, 'systemctl daemon-reload');
		await testbed.clearFaults(host);
		expect(slow.code).toBe(0);
		expect(slow.stdout.split('\n').filter((line) => line.startsWith('systemctl: working'))).toHaveLength(20);
		// 19 pauses of 0.2 s between the lines: a lower bound the sleeps guarantee.
		expect(slow.ms).toBeGreaterThanOrEqual(3800);
	});

	it('clones every role from its bare origin; a new commit there is fetched and checked out', async () => {
		const host = testbed.hosts[0] as TestHost;
		expect(testbed.roles).toEqual(['backend', 'frontend']);
		for (const role of testbed.roles) {
			const latest = (await testbed.originCommits(role)).at(-1)!;
			expect(await testbed.originCommits(role)).toHaveLength(3);
			const repo = hostPaths.repo(role);
			const state = await ssh(
				host,
				`git -C ${repo} rev-parse HEAD && git -C ${repo} status --porcelain && ${repo}/app.sh`
			);
			expect(state).toMatchObject({ code: 0, stdout: `${latest}\n${role} 3\n`, stderr: '' });
			expect(await testbed.checkedOutCommit(host, role)).toBe(latest);
		}

		const next = await testbed.addCommit('backend');
		expect((await testbed.originCommits('backend')).at(-1)).toBe(next);
		expect(await testbed.checkedOutCommit(host, 'backend')).not.toBe(next);
		const synced = await ssh(
			host,
			`cd /opt/backend && git fetch --quiet origin && git checkout --quiet --detach ${next} && sh install.sh && git status --porcelain && cat build/REVISION`
		);
		expect(synced).toMatchObject({ code: 0, stdout: `installed backend 4\n${next}\n`, stderr: '' });
		expect(await testbed.checkedOutCommit(host, 'backend')).toBe(next);
		// The other host has not moved: each host has its own checkout.
		expect(await testbed.checkedOutCommit(testbed.hosts[1] as TestHost, 'backend')).not.toBe(next);
		const unknown = await ssh(host, `git -C /opt/backend checkout --quiet --detach ${'0'.repeat(40)}`);
		expect(unknown).toMatchObject({ code: 128, stderr: `fatal: reference is not a tree: ${'0'.repeat(40)}\n` });
	});

	it('serves each host’s own CA-signed certificate over TLS, and a reload serves a new one', async () => {
		const host = testbed.hosts[1] as TestHost;
		const served = await testbed.servedCertificate(host);
		expect(served.subjectAltName).toBe(`DNS:${host.name}, IP Address:${host.address}`);
		const onDisk = await ssh(host, `openssl x509 -in ${hostPaths.tlsCert} -noout -fingerprint -sha256 -issuer`);
		expect(onDisk.stdout).toBe(`sha256 Fingerprint=${served.fingerprint}\nissuer=CN = Flotilla testbed CA\n`);
		const verified = await run('openssl', [
			'verify',
			'-CAfile',
			testbed.caCertPath,
			join(host.root, 'etc/flotilla/tls/server.crt')
		]);
		expect(verified.stdout).toContain(': OK');
		// Every host has a certificate of its own.
		const neighbour = await testbed.servedCertificate(testbed.hosts[0] as TestHost);
		expect(neighbour.fingerprint).not.toBe(served.fingerprint);
		const health = await run('sh', [
			'-c',
			'printf "GET /health HTTP/1.0\\r\\n\\r\\n" | openssl s_client -quiet -verify_return_error -CAfile "$1" -connect "$2" 2>/dev/null',
			'sh',
			testbed.caCertPath,
			`${host.address}:${host.tlsPort}`
		]);
		expect(health.stdout).toMatch(/^HTTP\/1\.0 200 ok\r\n[\s\S]*\r\n\r\nok\n$/);

		const fresh = await testbed.issueCertificate(host, 10);
		expect(Math.round((fresh.validTo.getTime() - Date.now()) / 86_400_000)).toBe(10);
		await writeFile(join(host.root, 'etc/flotilla/tls/server.crt'), fresh.cert);
		await writeFile(join(host.root, 'etc/flotilla/tls/server.key'), fresh.key);
		// Until the reload the listener serves the certificate it started with.
		expect((await testbed.servedCertificate(host)).fingerprint).toBe(served.fingerprint);
		expect(await ssh(host, `systemctl reload ${hostPaths.tlsUnit}`)).toMatchObject({ code: 0, stderr: '' });
		expect((await testbed.servedCertificate(host)).fingerprint).toBe(fresh.fingerprint);

		// A key that does not match its certificate: the listener cannot start, and the reload says so.
		const other = await testbed.issueCertificate(host);
		await writeFile(join(host.root, 'etc/flotilla/tls/server.key'), other.key);
		const broken = await ssh(host, `systemctl reload ${hostPaths.tlsUnit}`);
		expect(broken.code).toBe(1);
		expect(broken.stderr).toContain('did not come back');
		await writeFile(join(host.root, 'etc/flotilla/tls/server.key'), fresh.key);
		expect((await ssh(host, `systemctl reload ${hostPaths.tlsUnit}`)).code).toBe(0);
		expect((await testbed.servedCertificate(host)).fingerprint).toBe(fresh.fingerprint);
	});

	it('stops a host so connections are refused, and starts it again', async () => {
		const host = testbed.hosts[1] as TestHost;
		await testbed.stopHost(host);
		expect(await tcpConnect(host)).toBe('ECONNREFUSED');
		const refused = await ssh(host, 'echo up');
		expect(refused.code).toBe(255);
		expect(refused.stderr).toContain('Connection refused');
		await testbed.startHost(host);
		expect(await ssh(host, 'echo up')).toMatchObject({ code: 0, stdout: 'up\n' });
	});

	it('changes the host key', async () => {
		const host = testbed.hosts[1] as TestHost;
		const before = host.hostKeyFingerprint;
		const oldKnownHosts = join(testbed.dir, 'known_hosts.before');
		await copyFile(testbed.knownHostsPath, oldKnownHosts);

		const after = await testbed.changeHostKey(host);
		expect(after).not.toBe(before);
		expect(host.hostKeyFingerprint).toBe(after);
		expect(await scannedFingerprint(host)).toBe(after);
		const strict = await ssh(host, 'echo up', oldKnownHosts);
		expect(strict.code).toBe(255);
		expect(strict.stderr).toContain('REMOTE HOST IDENTIFICATION HAS CHANGED');
		expect(await ssh(host, 'echo up')).toMatchObject({ code: 0, stdout: 'up\n' });
	});

	it('reboots: the session drops, the boot hook runs, and the host comes back', async () => {
		const host = testbed.hosts[0] as TestHost;
		await testbed.requireReboot(host, ['linux-image-6.1.0-29-amd64']);
		expect((await ssh(host, `cat ${hostPaths.rebootRequiredPackages}`)).stdout).toBe('linux-image-6.1.0-29-amd64\n');
		const servedBefore = (await testbed.servedCertificate(host)).fingerprint;
		const hook = join(host.root, 'opt/flotilla-testbed/boot');
		await writeFile(hook, '#!/bin/sh\necho "booted $(cat /var/lib/flotilla-testbed/boot-count)" >> /boot/hook.log\n', {
			mode: 0o755
		});

		const rebooting = await ssh(host, 'reboot; sleep 20; echo survived');
		expect(rebooting.code).toBe(255);
		expect(rebooting.stdout).toBe('Rebooting.\n');
		expect(rebooting.ms).toBeLessThan(10_000);
		// The listener died with the sessions; it is back only after the 2 s a reboot takes.
		await sleep(300);
		expect(await tcpConnect(host)).toBe('ECONNREFUSED');

		expect(await waitUntilAnswering(host, 15_000)).toMatchObject({ code: 0, stdout: 'up\n' });
		expect(await readFile(join(host.root, 'var/lib/flotilla-testbed/boot-count'), 'utf8')).toBe('1\n');
		// The hook ran inside the host, before boot-count was incremented.
		expect(await readFile(join(host.root, 'boot/hook.log'), 'utf8')).toBe('booted 0\n');
		expect(await testbed.commandLog(host)).toContainEqual(expect.stringMatching(/^\d{13} reboot$/));
		// /run is gone with the reboot, as a tmpfs is; the TLS listener is back with the same certificate.
		expect(await ssh(host, `test -e ${hostPaths.rebootRequired}`)).toMatchObject({ code: 1 });
		expect((await testbed.servedCertificate(host)).fingerprint).toBe(servedBefore);
		expect(await testbed.slotState(host)).toEqual({ active: 'a', next: 'a', good: 'a', tries: 0, boots: 1 });
	});

	it('A/B slots: boots the next slot, commits it after the gate, and falls back after 3 failed boots', async () => {
		const host = testbed.hosts[0] as TestHost;
		expect((await ssh(host, 'flotilla-slot standby && flotilla-slot path b')).stdout).toBe(
			'b\n/boot/flotilla/slot-b.img\n'
		);
		await writeFile(join(host.root, 'boot/flotilla/slot-b.img'), 'flotilla appliance image 2\n');
		expect((await ssh(host, 'flotilla-slot set-next b && reboot')).stdout).toBe('next boot: slot b\nRebooting.\n');
		await sleep(500);
		expect(await waitUntilAnswering(host, 15_000)).toMatchObject({ code: 0 });
		expect(await testbed.slotState(host)).toEqual({ active: 'b', next: 'b', good: 'a', tries: 1, boots: 2 });
		// The gate fails while the appliance's service is unhealthy, so the slot is not committed.
		await testbed.setFault(host, 'fail-health');
		const refused = await ssh(host, 'flotilla-slot commit');
		expect(refused).toMatchObject({ code: 1, stdout: 'gate: 10-appliance failed\n' });
		expect(refused.stderr).toBe('flotilla-slot: health gate failed: slot b not committed\n');
		await testbed.clearFaults(host);
		expect(await ssh(host, 'flotilla-slot commit')).toMatchObject({
			code: 0,
			stdout: 'gate: 10-appliance ok\ncommitted slot b\n'
		});
		expect(await ssh(host, 'flotilla-slot status')).toMatchObject({
			code: 0,
			stdout: 'active=b\nnext=b\ngood=b\ntries=0\nboots=2\n'
		});

		// Slot a does not boot any more: three boots of it fail, then the helper falls back to the good slot b.
		await testbed.setFault(host, 'fail-boot', 'a');
		expect((await ssh(host, 'flotilla-slot set-next a && reboot')).code).toBe(0);
		await sleep(500);
		expect(await waitUntilAnswering(host, 20_000)).toMatchObject({ code: 0 });
		expect(await testbed.slotState(host)).toEqual({ active: 'b', next: 'b', good: 'b', tries: 0, boots: 6 });
		const log = await readFile(join(host.root, 'supervise.log'), 'utf8');
		expect(log.match(/boot of slot a failed; booting again/g)).toHaveLength(3);
		expect(log).toContain('slot a was booted 3 times without a commit; falling back to slot b');
		await testbed.clearFaults(host);
		// An empty image is refused before any reboot.
		await writeFile(join(host.root, 'boot/flotilla/slot-a.img'), '');
		expect(await ssh(host, 'flotilla-slot set-next a')).toMatchObject({
			code: 1,
			stderr: 'flotilla-slot: slot a has no image\n'
		});
	});

	it('keeps a host down after a reboot when fail-boot is set', async () => {
		const host = testbed.hosts[2] as TestHost;
		await testbed.setFault(host, 'fail-boot');
		expect((await ssh(host, 'reboot')).stdout).toBe('Rebooting.\n');
		const log = join(host.root, 'supervise.log');
		for (let tries = 0; !(await readFile(log, 'utf8')).includes('host stays down') && tries < 50; tries++)
			await sleep(200);
		expect(await readFile(log, 'utf8')).toContain('fail-boot fault set; host stays down');
		expect(await tcpConnect(host)).toBe('ECONNREFUSED');

		await testbed.clearFaults(host);
		await testbed.startHost(host);
		expect(await ssh(host, 'echo up')).toMatchObject({ code: 0, stdout: 'up\n' });
		expect(await readFile(join(host.root, 'var/lib/flotilla-testbed/boot-count'), 'utf8')).toBe('0\n');
	});

	it('stop() leaves no sshd, no mount and no directory behind', async () => {
		const { dir } = testbed;
		// A session that would keep a namespace alive if stop() only killed the listeners.
		const lingering = ssh(testbed.hosts[0] as TestHost, 'sleep 60');
		await sleep(500);
		expect(await testbedSshdProcesses(dir)).toHaveLength(3);
		expect((await processesWithTestbedMounts(dir)).length).toBeGreaterThan(0);

		await testbed.stop();
		await testbed.stop();
		expect((await lingering).code).toBe(255);
		expect(await testbedSshdProcesses(dir)).toEqual([]);
		expect(await processesWithTestbedMounts(dir)).toEqual([]);
		await expect(stat(dir)).rejects.toThrow('ENOENT');
	});
});
