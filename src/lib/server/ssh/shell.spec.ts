import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hostileStrings } from '../../../../tests/fixtures/hostile-strings';
import { quote, sh, trusted, withDeadline } from './shell';

const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-quote-'));
const canary = path.join(dir, 'canary');
const corpus = hostileStrings(canary);

/** Runs a script in a real shell and returns what it printed. */
function run(shell: string, script: string): string {
	const res = spawnSync(shell, ['-c', script], { encoding: 'utf8', cwd: dir });
	expect(res.status, res.stderr).toBe(0);
	return res.stdout;
}

describe('the shell-quoting helper', () => {
	it('has a corpus of at least 200 hostile strings', () => {
		expect(new Set(corpus).size).toBeGreaterThanOrEqual(200);
	});

	for (const shell of ['bash', 'dash']) {
		it(`passes every hostile string through ${shell} as one literal argument, running nothing`, () => {
			for (const hostile of corpus) {
				const cmd = sh`printf '%s' ${hostile}`;
				expect(run(shell, cmd.script), JSON.stringify(hostile)).toBe(hostile);
			}
			expect(existsSync(canary)).toBe(false);
		});
	}

	it('stays literal through a second shell (timeout … bash -c), as on a node', () => {
		for (const hostile of corpus) {
			const cmd = withDeadline(sh`printf '%s' ${hostile}`, 10);
			expect(run('bash', cmd.script), JSON.stringify(hostile)).toBe(hostile);
		}
		expect(existsSync(canary)).toBe(false);
	});

	it('quotes arrays element by element and leaves numbers and trusted fragments as they are', () => {
		expect(sh`apt-get install -y -- ${['nginx', "it's"]}`.script).toBe(`apt-get install -y -- 'nginx' 'it'\\''s'`);
		expect(sh`sleep ${5}${trusted(' && true')}`.script).toBe('sleep 5 && true');
		expect(sh`echo ${sh`${'a b'}`}`.script).toBe(`echo 'a b'`);
	});

	it('refuses values no shell argument can hold', () => {
		expect(() => quote('a\0b')).toThrow(/NUL/);
		expect(() => sh`sleep ${Number.NaN}`).toThrow(/finite/);
	});

	it('wraps a command in timeout --kill-after so the node enforces the deadline', () => {
		expect(withDeadline(sh`sleep 600`, 2.5).script).toBe(`timeout --kill-after=5 3 bash -c 'sleep 600'`);
		const started = Date.now();
		const res = spawnSync('bash', ['-c', withDeadline(sh`sleep 600`, 1, 1).script]);
		expect(res.status).toBe(124);
		expect(Date.now() - started).toBeLessThan(5000);
	});
});
