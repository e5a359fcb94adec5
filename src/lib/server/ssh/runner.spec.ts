import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authorizedKeyOf, newHostKey, startSimulatedHost, type SimulatedHost } from '../sim/server';
import { connect } from './connection';
import { RunnerFrames, runnerFrame, runnerScript, runnerTagOf } from './runner';
import { sh } from './shell';

/** Commands as the console writes them: quotes, a here-document, blank and indented lines, a trailing newline. */
const scripts = [
	sh`printf '%s\n' ${'it\'s "quoted" $HOME `x`'}`.script,
	'cat <<EOF\n  indented\n\nEOF\necho after',
	'echo one\n',
	'cat; echo read-nothing'
];

describe('the runner script, run by the local sh (dash on Debian) as sshd would on a node', () => {
	it('runs each framed command in turn, with its own markers and exit status, and never lets it read the frames', async () => {
		const tag = 'flotilla-0123456789ab';
		const shell = spawn('sh', ['-c', runnerScript(tag)], { stdio: ['pipe', 'pipe', 'pipe'] });
		let out = '';
		let err = '';
		shell.stdout.on('data', (c: Buffer) => (out += c.toString()));
		shell.stderr.on('data', (c: Buffer) => (err += c.toString()));
		// All frames at once: a command that read its stdin would swallow the ones after it.
		shell.stdin.end(scripts.map((s, i) => runnerFrame(i + 1, 10, s)).join('') + runnerFrame(5, 10, 'exit 3'));
		await once(shell, 'close');
		expect(out).toBe(
			[
				`${tag}-ready`,
				`it's "quoted" $HOME \`x\``,
				`${tag}.1-end`,
				'  indented',
				'',
				'after',
				`${tag}.2-end`,
				'one',
				`${tag}.3-end`,
				'read-nothing',
				`${tag}.4-end`,
				`${tag}.5-end`,
				''
			].join('\n')
		);
		const markers = err.split('\n').filter(Boolean);
		expect(markers.map((m) => m.replace(/-pid:\d+$/, '-pid:N'))).toEqual([
			...[1, 2, 3, 4].flatMap((id) => [`${tag}.${id}-pid:N`, `${tag}.${id}-exit:0`]),
			`${tag}.5-pid:N`,
			`${tag}.5-exit:3`
		]);
	});

	it('is recognised by the simulator only as itself, and its frames read back as they were written', () => {
		const tag = 'flotilla-00ff00ff00ff';
		expect(runnerTagOf(runnerScript(tag))).toBe(tag);
		expect(runnerTagOf(runnerScript(tag) + '\necho more')).toBeUndefined();
		const frames = new RunnerFrames();
		const text = scripts.map((s, i) => runnerFrame(i + 1, 2.2, s)).join('');
		// Byte by byte, as a network may cut it.
		const read = [...text].flatMap((ch) => frames.push(ch));
		expect(read).toEqual(scripts.map((script, i) => ({ id: i + 1, seconds: 3, script })));
	});
});

describe('a node where the runner cannot start', () => {
	let host: SimulatedHost;
	const clientKey = newHostKey();
	beforeAll(async () => {
		host = await startSimulatedHost({ name: 'no-runner', authorizedKey: authorizedKeyOf(clientKey) });
		host.model.faults.noRunner = true;
	});
	afterAll(() => host.stop());

	it('runs every command as an exec of its own instead, with the same results', async () => {
		const conn = await connect({
			host: host.address,
			port: host.port,
			username: 'root',
			privateKey: clientKey,
			hostKeyFingerprint: host.hostKeyFingerprint
		});
		try {
			const results = [];
			for (const c of [sh`hostname`, sh`echo ${'two words'}`, sh`false`]) results.push(await conn.exec(c));
			expect(results.map((r) => [r.exitCode, r.stdout])).toEqual([
				[0, 'no-runner\n'],
				[0, 'two words\n'],
				[1, '']
			]);
		} finally {
			conn.close();
		}
	});
});
