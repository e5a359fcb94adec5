import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ExecResult, type OutputLine } from '../../src/lib/server/ssh/connection';
import { SshError } from '../../src/lib/server/ssh/errors';
import { downloadFile, uploadFile } from '../../src/lib/server/ssh/sftp';
import { sh } from '../../src/lib/server/ssh/shell';
import { hostileStrings } from '../fixtures/hostile-strings';
import { testbedTarget } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed.ts';

let bed: Testbed;
let a: TestHost;
let b: TestHost;
let c: TestHost;

beforeAll(async () => {
	bed = await startTestbed({ hosts: 3, firstHost: 60 });
	[a, b, c] = bed.hosts as [TestHost, TestHost, TestHost];
}, 60_000);
afterAll(() => bed?.stop());

const target = (h: TestHost, pinned?: string | null) => testbedTarget(bed, h, pinned);

async function failureOf(p: Promise<unknown>): Promise<SshError> {
	const err = await p.then(
		() => undefined,
		(e: unknown) => e
	);
	expect(err).toBeInstanceOf(SshError);
	return err as SshError;
}

/** Processes on the test hosts are visible from here; a marker in argv finds them. */
const running = (marker: string) => {
	try {
		return execFileSync('pgrep', ['-f', marker], { encoding: 'utf8' }).trim();
	} catch {
		return '';
	}
};

describe('exec on a real OpenSSH host', () => {
	it('streams output line by line as it is printed, and reports the exit code', async () => {
		// Each line waits on the host for a file the test writes only once it has seen the line before: the
		// command can finish only if every line reached onLine while the command was still running.
		const gate = `/opt/flotilla-stream-${randomBytes(4).toString('hex')}`;
		const conn = await connect(target(a));
		const lines: OutputLine[] = [];
		const res = await conn.exec(
			sh`for i in 1 2 3; do echo line$i; while [ ! -e ${gate}-$i ]; do sleep 0.05; done; done; echo oops >&2; exit 3`,
			{
				deadlineMs: 20_000,
				onLine: (l) => {
					lines.push(l);
					if (l.stream === 'stdout') writeFileSync(path.join(a.root, `${gate}-${l.line.slice(4)}`), '');
				}
			}
		);
		conn.close();
		expect(res.timedOut).toBe(false);
		expect(res.exitCode).toBe(3);
		expect(res.stdout).toBe('line1\nline2\nline3\n');
		expect(res.stderr).toBe('oops\n');
		expect(lines.map((l) => `${l.stream}:${l.line}`)).toEqual([
			'stdout:line1',
			'stdout:line2',
			'stdout:line3',
			'stderr:oops'
		]);
	});

	it('runs commands in turn on one session (the runner), one that finds it busy on a session of its own, and leaves nothing once closed', async () => {
		const conn = await connect(target(a));
		// A command's parent is `timeout`; what started `timeout` is the runner, or a session's shell of its own. The
		// host may have its own pid namespace, so the node itself looks at /proc (`-rea[d]y` so that the pattern, which
		// a session's shell has in its own command line, does not match itself).
		const starter = sh`p=$(cut -d' ' -f4 /proc/$PPID/stat); printf '%s %s\\n' "$p" "$(tr '\\0' ' ' </proc/$p/cmdline | grep -c -- '-rea[d]y')"`;
		const first = (await conn.exec(starter)).stdout.trim();
		const runnerPid = first.split(' ')[0]!;
		expect(first).toBe(`${runnerPid} 1`);
		expect((await conn.exec(starter)).stdout.trim()).toBe(first);
		const busy = conn.exec(sh`sleep 1; ${starter}`);
		const beside = (await conn.exec(starter)).stdout.trim();
		expect(beside).toMatch(/^\d+ 0$/);
		expect((await busy).stdout.trim()).toBe(first);
		// A last line without its newline is still a line, and none of the runner's markers shows in the output.
		const raw = await conn.exec(sh`printf 'a\nb'; printf 'e' >&2; exit 3`);
		expect([raw.exitCode, raw.stdout, raw.stderr]).toEqual([3, 'a\nb\n', 'e\n']);
		conn.close();
		const look = await connect(target(a));
		const gone = sh`for i in $(seq 50); do test -e /proc/${runnerPid} || exit 0; sleep 0.1; done; exit 1`;
		expect((await look.exec(gone)).exitCode).toBe(0);
		look.close();
	});

	it('ends `sleep 600` at its deadline and leaves nothing running on the host', async () => {
		const marker = `flotilla-deadline-${randomBytes(4).toString('hex')}`;
		const conn = await connect(target(a));
		const res = await conn.exec(sh`exec -a ${marker} sleep 600`, { deadlineMs: 1500 });
		conn.close();
		expect(res.timedOut).toBe(true);
		// 124 is timeout(1)'s own status: the node ended it at the deadline, not the console's backstop.
		expect(res.exitCode).toBe(124);
		expect(running(marker)).toBe('');
	});

	it('cancels a running command by killing its process group, and resolves once the group is dead', async () => {
		const marker = `flotilla-cancel-${randomBytes(4).toString('hex')}`;
		const conn = await connect(target(a));
		const abort = new AbortController();
		// The child ignores TERM (set before it is forked, so there is no race), and only the KILL that follows
		// ends it. It holds none of the channel's pipes, so the channel closes without waiting for it: checked as
		// soon as exec resolves, it is gone only if exec waited for the whole kill.
		const res = await conn.exec(
			sh`trap '' TERM; (exec -a ${`${marker}-child`} sleep 600 </dev/null >/dev/null 2>&1) & trap - TERM; echo started; exec -a ${marker} sleep 600`,
			{
				deadlineMs: 60_000,
				signal: abort.signal,
				onLine: (l) => {
					if (l.line === 'started') abort.abort();
				}
			}
		);
		expect(running(marker)).toBe('');
		conn.close();
		expect(res.cancelled).toBe(true);
		expect(res.timedOut).toBe(false);
	});

	it('starts nothing on the host when the signal is already aborted', async () => {
		const marker = `flotilla-preabort-${randomBytes(4).toString('hex')}`;
		const conn = await connect(target(a));
		const res = await conn.exec(sh`touch ${`/opt/${marker}`}; exec -a ${marker} sleep 600`, {
			deadlineMs: 5_000,
			signal: AbortSignal.abort()
		});
		expect(res).toMatchObject({ cancelled: true, timedOut: false, exitCode: null, stdout: '', stderr: '' });
		expect(running(marker)).toBe('');
		// A command sent after it on the same connection has run to its end; the cancelled one, had it been
		// sent, would have written its file first.
		const later = await conn.exec(sh`touch ${`/opt/${marker}-later`}`);
		conn.close();
		expect(later.exitCode).toBe(0);
		expect(existsSync(path.join(a.root, 'opt', `${marker}-later`))).toBe(true);
		expect(existsSync(path.join(a.root, 'opt', marker))).toBe(false);
		expect(running(marker)).toBe('');
	});

	it('kills a command cancelled before its pid arrived as soon as the pid arrives', async () => {
		const marker = `flotilla-early-cancel-${randomBytes(4).toString('hex')}`;
		// The sleeper ignores TERM and holds none of the channel's pipes, so it is gone when exec resolves only if
		// the kill was sent once the pid arrived and exec waited for its KILL.
		const conn = await connect(target(a));
		const abort = new AbortController();
		const cancelled = conn.exec(
			sh`trap '' TERM; (exec -a ${marker} sleep 600 </dev/null >/dev/null 2>&1) & trap - TERM; wait`,
			{ deadlineMs: 30_000, signal: abort.signal }
		);
		// In the same turn: the channel is still being opened, the wrapper's pid line cannot have arrived.
		abort.abort();
		const res = await cancelled;
		expect(running(marker)).toBe('');
		conn.close();
		expect(res.cancelled).toBe(true);
		expect(res.timedOut).toBe(false);
	});

	it('runs no hostile string as a command, on a real host through sshd and bash', async () => {
		const canary = '/opt/flotilla-canary';
		const corpus = hostileStrings(canary);
		const conn = await connect(target(b));
		// Compared as hex, so that every byte (newlines, carriage returns) must arrive exactly as sent.
		const results = await Promise.all(
			corpus.map((hostile) => conn.exec(sh`printf '%s' ${hostile} | od -An -tx1 | tr -d ' \n'`, { deadlineMs: 30_000 }))
		);
		results.forEach((res, i) => {
			const hostile = corpus[i]!;
			expect(res.exitCode, JSON.stringify({ hostile, res })).toBe(0);
			expect(res.stdout.trim(), JSON.stringify(hostile)).toBe(Buffer.from(hostile).toString('hex'));
		});
		conn.close();
		expect(corpus.length).toBeGreaterThanOrEqual(200);
		expect(existsSync(path.join(b.root, 'opt', 'flotilla-canary'))).toBe(false);
	});

	it('never has more channels open than maxChannels, however callers arrive', async () => {
		const limit = 2;
		const dir = `/opt/flotilla-channels-${randomBytes(4).toString('hex')}`;
		mkdirSync(path.join(c.root, dir));
		writeFileSync(path.join(c.root, dir, 'open'), '0\n');
		writeFileSync(path.join(c.root, dir, 'max'), '0\n');
		const [lock, open, max] = ['lock', 'open', 'max'].map((f) => `${dir}/${f}`) as [string, string, string];
		// Each command counts itself as open on the host for a while, under a lock, and keeps the highest count.
		// Its last output has no newline, so onLine sees it only when the channel closes.
		const counted = sh`exec 9>${lock}; flock 9; n=$(($(cat ${open}) + 1)); echo $n >${open}; if [ $n -gt $(cat ${max}) ]; then echo $n >${max}; fi; flock -u 9; sleep 0.3; flock 9; echo $(($(cat ${open}) - 1)) >${open}; flock -u 9; printf closing`;
		const conn = await connect(target(c), { maxChannels: limit });
		const execs: Promise<ExecResult>[] = [];
		let calls = 0;
		const start = () => execs.push(conn.exec(counted, { deadlineMs: 30_000, onLine }));
		// Callers also arrive at every depth of microtasks after a channel closes, so that some arrive while
		// its slot passes to a waiting caller.
		const onLine = () => {
			for (let depth = 0; depth < 12 && calls < 40; depth++, calls++) {
				void (async () => {
					for (let i = 0; i < depth; i++) await null;
					start();
				})();
			}
		};
		for (; calls < 6; calls++) start();
		// Calls keep arriving while earlier ones run; wait until no more came.
		for (let settled = 0; settled < execs.length;) {
			const batch = execs.slice(settled);
			await Promise.all(batch);
			settled += batch.length;
		}
		conn.close();
		expect(execs.length).toBe(40);
		for (const res of await Promise.all(execs)) expect(res.exitCode, JSON.stringify(res)).toBe(0);
		// The limit was reached, and never passed.
		expect(readFileSync(path.join(c.root, max), 'utf8').trim()).toBe(String(limit));
		expect(readFileSync(path.join(c.root, open), 'utf8').trim()).toBe('0');
	});
});

describe('host keys', () => {
	it('connects only to the pinned key', async () => {
		const conn = await connect(target(a));
		expect(conn.fingerprint).toBe(a.hostKeyFingerprint);
		conn.close();
	});

	it('refuses an unknown key and reports its fingerprint for an admin to accept', async () => {
		const err = await failureOf(connect(target(a, null)));
		expect(err.failure).toBe('host_key_unknown');
		expect(err.fingerprint).toBe(a.hostKeyFingerprint);
	});

	it('refuses a changed key', async () => {
		const pinned = c.hostKeyFingerprint;
		const fresh = await bed.changeHostKey(c);
		expect(fresh).not.toBe(pinned);
		const err = await failureOf(connect(target(c, pinned)));
		expect(err.failure).toBe('host_key_changed');
		expect(err.fingerprint).toBe(fresh);
		expect(err.message).toContain(pinned);
	});
});

describe('unreachable and misbehaving hosts', () => {
	let silent: Server;
	const sockets = new Set<Socket>();
	beforeAll(async () => {
		// Accepts TCP and never says a word: a host that hangs before the SSH banner.
		silent = createServer((socket) => {
			// Reading is how a server notices the client hung up.
			socket.resume();
			sockets.add(socket);
			socket.on('close', () => sockets.delete(socket));
		});
		await new Promise<void>((r) => silent.listen(2222, '127.0.1.250', r));
	});
	afterAll(async () => {
		for (const socket of sockets) socket.destroy();
		await new Promise<void>((r) => silent.close(() => r()));
	});

	it('reports a stopped host as unreachable, at once', async () => {
		await bed.stopHost(b);
		// Refused, not timed out: the console did not wait for the ready timeout to give up.
		const err = await failureOf(connect(target(b)));
		expect(err.failure).toBe('unreachable');
		await bed.startHost(b);
		(await connect(target(b))).close();
	});

	it('gives up on a host that hangs before the banner after the ready timeout', async () => {
		const err = await failureOf(connect({ ...target(a), host: '127.0.1.250', port: 2222 }, { readyTimeoutMs: 1000 }));
		expect(err.failure).toBe('timeout');
		// The console gave up on the socket too: the silent host sees every connection to it closed.
		await Promise.all([...sockets].map((socket) => once(socket, 'close')));
		expect(sockets.size).toBe(0);
	});

	it('turns a connection dropped mid-command into an error, not a crash', async () => {
		await bed.setFault(a, 'drop-connection', 'systemctl');
		const conn = await connect(target(a));
		const err = await failureOf(conn.exec(sh`echo before; systemctl restart web; echo after`));
		expect(err.failure).toBe('disconnected');
		expect(conn.closed).toBe(true);
		await bed.clearFaults(a);
		(await connect(target(a))).close();
	});

	it('reaches a node through a bastion, and verifies the bastion key too', async () => {
		const viaBastion = { ...target(b), jump: target(a) };
		const conn = await connect(viaBastion);
		const res = await conn.exec(sh`cat /etc/flotilla-testbed/name 2>/dev/null || hostname`);
		conn.close();
		expect(res.exitCode, JSON.stringify(res)).toBe(0);
		const wrongBastion = { ...target(b), jump: target(a, c.hostKeyFingerprint) };
		expect((await failureOf(connect(wrongBastion))).failure).toBe('host_key_changed');
	});
});

describe('SFTP', () => {
	const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-sftp-'));
	const big = path.join(dir, 'image.bin');

	beforeAll(() => {
		// 256 MiB of incompressible data, written in 16 MiB pieces.
		const piece = randomBytes(16 << 20);
		writeFileSync(big, '');
		for (let i = 0; i < 16; i++)
			writeFileSync(
				big,
				piece.map((x) => x ^ i),
				{ flag: 'a' }
			);
	});

	it('uploads 256 MiB with progress, and the host computes the same sha256', async () => {
		const conn = await connect(target(c));
		const progress: number[] = [];
		const res = await uploadFile(conn, big, '/opt/image.bin', { onProgress: (p) => progress.push(p.bytes) });
		conn.close();
		expect(res.bytes).toBe(256 << 20);
		expect(res.resumedFrom).toBe(0);
		expect(res.sha256).toBe(execFileSync('sha256sum', [big], { encoding: 'utf8' }).slice(0, 64));
		expect(progress.at(-1)).toBe(256 << 20);
		expect(progress.length).toBeGreaterThan(10);
	}, 120_000);

	it('resumes an upload whose connection dropped, from what already arrived', async () => {
		const first = await connect(target(c));
		const dropAt = 100 << 20;
		const dropped = await failureOf(
			uploadFile(first, big, '/opt/resumed.bin', {
				resume: false,
				onProgress: (p) => {
					if (p.bytes >= dropAt) first.close();
				}
			})
		);
		expect(['disconnected', 'protocol']).toContain(dropped.failure);
		const onHost = path.join(c.root, 'opt', 'resumed.bin');
		const partial = statSync(onHost).size;
		expect(partial).toBeGreaterThan(50 << 20);
		expect(partial).toBeLessThan(256 << 20);

		const second = await connect(target(c));
		const res = await uploadFile(second, big, '/opt/resumed.bin');
		second.close();
		expect(res.resumedFrom).toBeGreaterThan(0);
		expect(res.resumedFrom).toBeLessThanOrEqual(partial);
		expect(res.sha256).toBe(execFileSync('sha256sum', [onHost], { encoding: 'utf8' }).slice(0, 64));
		expect(res.sha256).toBe(execFileSync('sha256sum', [big], { encoding: 'utf8' }).slice(0, 64));
	}, 120_000);

	it('sends the whole file again when what is there is not a prefix of it', async () => {
		const small = path.join(dir, 'small.txt');
		writeFileSync(small, 'hello flotilla\n');
		// A remote file of the right size holding other bytes: resuming from it would be wrong.
		writeFileSync(path.join(c.root, 'opt', 'small.txt'), 'HELLO FLOTILLA\n');
		const conn = await connect(target(c));
		const res = await uploadFile(conn, small, '/opt/small.txt');
		expect(res.resumedFrom).toBe(0);
		expect((await downloadFile(conn, '/opt/small.txt')).toString()).toBe('hello flotilla\n');
		await expect(downloadFile(conn, '/opt/image.bin', 1024)).rejects.toThrow(/over 1024/);
		conn.close();
	});

	it('checks what arrived against a sha256 the caller already holds, and refuses a file that is not it', async () => {
		const file = path.join(dir, 'known.txt');
		writeFileSync(file, 'signed image bytes\n');
		const declared = createHash('sha256').update('signed image bytes\n').digest('hex');
		const conn = await connect(target(c));
		const res = await uploadFile(conn, file, '/opt/known.txt', { sha256: declared });
		expect(res.sha256).toBe(declared);
		// The stored file changed after its sha256 was declared: what arrives is not what was signed.
		writeFileSync(file, 'tampered image bytes\n');
		const refused = await failureOf(uploadFile(conn, file, '/opt/known.txt', { sha256: declared, resume: false }));
		conn.close();
		expect(refused.failure).toBe('integrity');
		expect(refused.message).toContain(`expected ${declared}`);
	});
});
