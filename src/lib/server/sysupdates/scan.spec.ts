import { describe, expect, it } from 'vitest';
import { StepFailed } from '$lib/server/engine';
import type { ExecResult } from '$lib/server/ssh/command-watch';
import { readNode } from './scan';

/**
 * readNode's one command, answered as a node would: `answer` gets the scan's random marker and returns the
 * command's stdout, stderr and exit status; a status outside the allowed ones fails as the engine's exec does.
 */
function node(answer: (marker: string) => { stdout: string; stderr?: string; exitCode: number }) {
	const commands: string[] = [];
	const exec = async (command: { script: string }, options?: { okExitCodes?: number[] }): Promise<ExecResult> => {
		commands.push(command.script);
		const marker = /printf '%s\\n' '(flotilla-scan-[0-9a-f]{12}) list'/.exec(command.script)![1]!;
		const { stdout, stderr = '', exitCode } = answer(marker);
		if (!(options?.okExitCodes ?? [0]).includes(exitCode)) throw new StepFailed(`exited with ${exitCode}`, exitCode);
		return { exitCode, signal: null, durationMs: 1, stdout, stderr, timedOut: false, cancelled: false };
	};
	return { exec, commands };
}

const listed = (m: string) =>
	[
		'Hit:1 http://deb.debian.org/debian bookworm InRelease',
		'Reading package lists...',
		`${m} list`,
		'Listing...',
		'libc6/bookworm-security 2.36-9+deb12u9 amd64 [upgradable from: 2.36-9+deb12u8]',
		`${m} held`,
		'tzdata',
		`${m} reboot-required`,
		'libc6',
		`${m} needrestart`,
		'NEEDRESTART-VER: 3.6',
		'NEEDRESTART-SVC: cron.service',
		''
	].join('\n');

describe('readNode: the scan in one command', () => {
	it('reads each section after its marker; lines that only look like markers are content', async () => {
		const n = node((m) => ({
			stdout: listed(m).replace('tzdata\n', 'tzdata\nflotilla-scan-000000000000 list\n'),
			exitCode: 0
		}));
		expect(await readNode(n, true)).toEqual({
			packages: [expect.objectContaining({ name: 'libc6', candidate: '2.36-9+deb12u9', security: true })],
			rebootRequired: true,
			rebootPackages: ['libc6'],
			servicesToRestart: ['cron.service'],
			held: ['tzdata']
		});
		// apt-get update only when asked to refresh; a fresh marker every scan.
		expect(n.commands[0]).toMatch(/^LANG=C apt-get -q -o 'DPkg::Lock::Timeout=120' update \|\| exit\n/);
		await readNode(n, false);
		expect(n.commands[1]).not.toContain('apt-get');
		expect(n.commands[1]!.match(/flotilla-scan-[0-9a-f]+/)![0]).not.toBe(
			n.commands[0]!.match(/flotilla-scan-[0-9a-f]+/)![0]
		);
	});

	it('no reboot-required marker: no reboot; needrestart missing (127 after its marker): services unknown', async () => {
		const n = node((m) => ({
			stdout: listed(m)
				.replace(`${m} reboot-required\nlibc6\n`, '')
				.replace(/NEEDRESTART.*\n/g, ''),
			stderr: 'bash: line 8: needrestart: command not found',
			exitCode: 127
		}));
		expect(await readNode(n, true)).toMatchObject({
			rebootRequired: false,
			rebootPackages: [],
			servicesToRestart: null
		});
	});

	it('127 before needrestart had its turn (apt itself missing) fails the scan, naming why', async () => {
		const n = node(() => ({ stdout: '', stderr: 'bash: line 1: apt-get: command not found', exitCode: 127 }));
		await expect(readNode(n, true)).rejects.toThrow('exited with 127: bash: line 1: apt-get: command not found');
	});

	it('a read that fails ends the scan with its status (apt waited for the lock in vain: 100)', async () => {
		const n = node(() => ({ stdout: '', stderr: 'E: Could not get lock /var/lib/dpkg/lock-frontend', exitCode: 100 }));
		await expect(readNode(n, true)).rejects.toThrow('exited with 100');
	});
});
