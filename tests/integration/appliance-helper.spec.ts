import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/**
 * The appliance's own side (appliance/flotilla-slot), run as the appliance runs it, in a folder standing for
 * /boot/flotilla and /etc/flotilla; and the static checks its files and the default health checks
 * (appliance/health.d) must pass (shellcheck, grub-script-check).
 */

const run = promisify(execFile);
const helper = new URL('../../appliance/flotilla-slot', import.meta.url).pathname;
const healthChecks = new URL('../../appliance/health.d/', import.meta.url).pathname;
const grubFragment = new URL('../../docs/appliances/grub.cfg', import.meta.url).pathname;
let root: string;
let env: NodeJS.ProcessEnv;

async function slot(...args: string[]): Promise<{ code: number; out: string; err: string }> {
	try {
		const r = await run('sh', [helper, ...args], { env });
		return { code: 0, out: r.stdout, err: r.stderr };
	} catch (e) {
		const x = e as { code: number; stdout: string; stderr: string };
		return { code: x.code, out: x.stdout, err: x.stderr };
	}
}
const fact = async (name: string) => (await readFile(join(root, 'boot', name), 'utf8')).trim();

beforeEach(async () => {
	root = await mkdtemp(join(tmpdir(), 'flotilla-slot-'));
	env = { ...process.env, FLOTILLA_SLOT_DIR: join(root, 'boot'), FLOTILLA_CONF_DIR: join(root, 'etc') };
	await mkdir(join(root, 'etc/health.d'), { recursive: true });
	await slot('init', 'a');
	await writeFile(join(root, 'boot/slot-a.img'), 'image 1\n');
	await writeFile(join(root, 'boot/slot-b.img'), 'image 2\n');
});
afterEach(() => rm(root, { recursive: true, force: true }));

async function healthy(ok: boolean) {
	await writeFile(join(root, 'etc/health.d/10-service'), `#!/bin/sh\nexit ${ok ? 0 : 1}\n`);
	await chmod(join(root, 'etc/health.d/10-service'), 0o755);
}

describe('static checks', () => {
	it('the slot helper and the default health checks pass shellcheck as POSIX sh', async () => {
		const checks = (await readdir(healthChecks)).map((name) => join(healthChecks, name));
		expect(checks.map((c) => c.slice(healthChecks.length))).toEqual([
			'10-network',
			'20-service',
			'30-console',
			'40-time'
		]);
		const r = await run('shellcheck', ['-s', 'sh', helper, ...checks]);
		expect(r.stdout).toBe('');
	});
	it('the documented grub.cfg fragment passes grub-script-check, and a broken one does not', async () => {
		await run('grub-script-check', [grubFragment]);
		const broken = join(root, 'broken.cfg');
		await writeFile(broken, (await readFile(grubFragment, 'utf8')).replace(/\nfi\n/, '\n'));
		await expect(run('grub-script-check', [broken])).rejects.toThrow();
	});
	it('keeps boot.cfg, which the GRUB fragment sources, in step with the next slot', async () => {
		await slot('set-next', 'b');
		expect(await fact('boot.cfg')).toBe('set flotilla_next=b');
		await slot('revert');
		expect(await fact('boot.cfg')).toBe('set flotilla_next=a');
	});
});

describe('boot logic and operator verbs', () => {
	it('status and report fail as a whole on an appliance that was never initialised', async () => {
		await rm(join(root, 'boot/active'));
		for (const verb of ['status', 'report', '--status']) {
			const r = await slot(verb);
			expect(r.code).toBe(1);
			expect(r.out).toBe('');
			expect(r.err).toMatch(/no state in .* \(run flotilla-slot init first\)/);
		}
	});
	it('reboots from the early boot when the bootloader started another slot than the one it chose now', async () => {
		// The kernel command line the GRUB fragment gives slot b, and a reboot that only leaves a trace.
		await writeFile(
			join(root, 'cmdline'),
			'BOOT_IMAGE=(slot)/boot/vmlinuz root=live:LABEL=flotilla-b flotilla.slot=b ro quiet\n'
		);
		await writeFile(join(root, 'etc/watchdog.conf'), `reboot_command='echo rebooted >>${join(root, 'reboots')}'\n`);
		env = { ...env, FLOTILLA_CMDLINE: join(root, 'cmdline') };
		await slot('set-next', 'b');
		for (let i = 0; i < 3; i++) expect((await slot('boot')).out.trim()).toBe('b');
		await expect(readFile(join(root, 'reboots'), 'utf8')).rejects.toThrow();
		const fourth = await slot('boot');
		expect(fourth.out.trim()).toBe('a');
		expect(fourth.err).toMatch(/slot b was started, slot a is chosen: rebooting/);
		expect(await readFile(join(root, 'reboots'), 'utf8')).toBe('rebooted\n');
		// Slot a started as chosen: no reboot.
		await writeFile(join(root, 'cmdline'), 'root=live:LABEL=flotilla-a flotilla.slot=a ro quiet\n');
		expect((await slot('boot')).out.trim()).toBe('a');
		expect(await readFile(join(root, 'reboots'), 'utf8')).toBe('rebooted\n');
	});
	it('falls back after 3 boots of a slot that never passed the gate, and says why', async () => {
		await slot('set-next', 'b');
		for (let i = 0; i < 3; i++) expect((await slot('boot')).out.trim()).toBe('b');
		expect((await slot('boot')).out.trim()).toBe('a');
		expect((await slot('report')).out).toMatch(
			/^fallback=boot: slot b was booted 3 times without passing the health gate; fell back to slot a$/m
		);
		expect(await fact('good')).toBe('a');
	});

	it('boot-gate commits a healthy new slot, and reboots an unhealthy one until the fallback', async () => {
		await writeFile(join(root, 'etc/watchdog.conf'), `reboot_command='echo rebooted >>${join(root, 'reboots')}'\n`);
		await slot('set-next', 'b');
		await slot('boot');
		await healthy(false);
		expect((await slot('boot-gate')).err).toMatch(/slot b failed its health gate; rebooting/);
		expect(await readFile(join(root, 'reboots'), 'utf8')).toBe('rebooted\n');
		expect(await fact('good')).toBe('a');
		// The gate's outcome is kept for the console, which may not have been there to see it.
		expect((await slot('report')).out).toMatch(/^last_gate=b failed 10-service$/m);
		await healthy(true);
		expect((await slot('boot-gate')).out).toMatch(/committed slot b/);
		expect(await fact('good')).toBe('b');
		expect((await slot('report')).out).toMatch(/^last_gate=b passed$/m);
	});

	it('--status, --check, --rollback and --skip-window', async () => {
		expect((await slot('--status')).out).toMatch(
			/^active=a\nnext=a\ngood=a\ntries=0\nboots=0\nfallback=\nskip_window=0\n/
		);
		expect((await slot('report')).out).toMatch(/^last_gate=$/m);
		await healthy(false);
		const check = await slot('--check');
		expect(check.code).toBe(1);
		expect(check.out).toMatch(/gate: 10-service failed/);
		expect((await slot('--rollback')).out).toMatch(/next boot: slot b/);
		expect(await fact('next')).toBe('b');
		await slot('--skip-window');
		expect((await slot('report')).out).toMatch(/^skip_window=1$/m);
		await slot('--skip-window', '--cancel');
		expect((await slot('report')).out).toMatch(/^skip_window=0$/m);
	});

	it('clear refuses the booted and the good slot', async () => {
		expect((await slot('clear', 'a')).err).toMatch(/slot a is booted now/);
		expect((await slot('clear', 'b')).code).toBe(0);
		expect(await readFile(join(root, 'boot/slot-b.img'), 'utf8')).toBe('');
	});
});

describe('the watchdog', () => {
	async function updatedTo(b: boolean) {
		await healthy(true);
		if (b) {
			await slot('set-next', 'b');
			await slot('boot');
			await slot('commit');
		}
	}

	it('goes back to the previous slot when the console stays unreachable after an update, and not before', async () => {
		await updatedTo(true);
		const reboots = join(root, 'reboots');
		await writeFile(
			join(root, 'etc/watchdog.conf'),
			`console_probe=false\nunreachable_seconds=3600\nreboot_command='echo rebooted >>${reboots}'\n`
		);
		expect((await slot('watchdog')).out).toMatch(/console unreachable for 0s \(reverting at 3600s\)/);
		expect(await fact('good')).toBe('b');
		// An hour and more later, still unreachable.
		await writeFile(join(root, 'boot/unreachable-since'), `${Math.floor(Date.now() / 1000) - 3700}\n`);
		expect((await slot('watchdog')).out).toMatch(/back to slot a, rebooting/);
		expect(await fact('good')).toBe('a');
		expect(await fact('next')).toBe('a');
		expect(await readFile(reboots, 'utf8')).toBe('rebooted\n');
		expect((await slot('report')).out).toMatch(
			/^fallback=watchdog: the console was unreachable for 3[0-9]{3}s after the update; went back to slot a$/m
		);
	});

	it('stays quiet while the console answers, and without a recent update', async () => {
		await writeFile(join(root, 'etc/watchdog.conf'), 'console_probe=true\n');
		expect((await slot('watchdog')).out).toMatch(/no update to watch/);
		await updatedTo(true);
		expect((await slot('watchdog')).out).toMatch(/console reachable/);
		expect(await fact('good')).toBe('b');
	});
});
