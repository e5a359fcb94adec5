import { describe, expect, it } from 'vitest';
import { parseNeedrestart, parseRebootPackages, parseSimulation, parseUpgradable, securityReasonOf } from './apt';

describe('apt list --upgradable', () => {
	it('parses every field and marks security updates with their pocket', () => {
		const out = [
			'Listing...',
			'openssl/bookworm-security 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]',
			'libc6/bookworm-security,bookworm 2.36-9+deb12u9 amd64 [upgradable from: 2.36-9+deb12u8]',
			'tzdata/stable-updates 2024b-0+deb12u1 all [upgradable from: 2024a-0+deb12u1]',
			'vim/stable 2:9.0.1378-2+deb12u1 amd64 [upgradable from: 2:9.0.1378-2]',
			'libssl3/jammy-updates,jammy-security 3.0.2-0ubuntu1.18 amd64 [upgradable from: 3.0.2-0ubuntu1.15]',
			'bash/oldoldstable/updates 5.0-4+deb10u1 amd64 [upgradable from: 5.0-4]',
			''
		].join('\n');
		expect(parseUpgradable(out)).toEqual([
			{
				name: 'bash',
				arch: 'amd64',
				installed: '5.0-4',
				candidate: '5.0-4+deb10u1',
				suites: ['oldoldstable/updates'],
				security: true,
				securityReason: 'offered by the security pocket oldoldstable/updates'
			},
			{
				name: 'libc6',
				arch: 'amd64',
				installed: '2.36-9+deb12u8',
				candidate: '2.36-9+deb12u9',
				suites: ['bookworm-security', 'bookworm'],
				security: true,
				securityReason: 'offered by the security pocket bookworm-security'
			},
			{
				name: 'libssl3',
				arch: 'amd64',
				installed: '3.0.2-0ubuntu1.15',
				candidate: '3.0.2-0ubuntu1.18',
				suites: ['jammy-updates', 'jammy-security'],
				security: true,
				securityReason: 'offered by the security pocket jammy-security'
			},
			{
				name: 'openssl',
				arch: 'amd64',
				installed: '3.0.14-1~deb12u2',
				candidate: '3.0.15-1~deb12u1',
				suites: ['bookworm-security'],
				security: true,
				securityReason: 'offered by the security pocket bookworm-security'
			},
			{
				name: 'tzdata',
				arch: 'all',
				installed: '2024a-0+deb12u1',
				candidate: '2024b-0+deb12u1',
				suites: ['stable-updates'],
				security: false,
				securityReason: null
			},
			{
				name: 'vim',
				arch: 'amd64',
				installed: '2:9.0.1378-2',
				candidate: '2:9.0.1378-2+deb12u1',
				suites: ['stable'],
				security: false,
				securityReason: null
			}
		]);
	});

	it('leaves out warnings, notes and anything not shaped like a package line', () => {
		const out = [
			'WARNING: apt does not have a stable CLI interface. Use with caution in scripts.',
			'Listing... Done',
			"N: There is 1 additional version. Please use the '-a' switch to see it",
			'evil;rm -rf //stable 1 amd64 [upgradable from: 0]',
			'$(reboot)/stable 1 amd64 [upgradable from: 0]',
			'-o/stable 1 amd64 [upgradable from: 0]',
			'ok/stable 1 amd64 [upgradable from: 0] trailing'
		].join('\n');
		expect(parseUpgradable(out)).toEqual([]);
	});

	it('security pockets by name only', () => {
		expect(securityReasonOf(['bookworm-updates'])).toBeNull();
		expect(securityReasonOf(['security'])).toBeNull();
		expect(securityReasonOf(['noble-security'])).toBe('offered by the security pocket noble-security');
	});
});

describe('reboot-required.pkgs and needrestart -b', () => {
	it('lists each package once, sorted', () => {
		expect(parseRebootPackages('linux-image-6.1.0-29-amd64\nlibc6\nlibc6\n\n')).toEqual([
			'libc6',
			'linux-image-6.1.0-29-amd64'
		]);
	});

	it('reads services and the kernel state', () => {
		const out =
			'NEEDRESTART-VER: 3.6\nNEEDRESTART-KCUR: 6.1.0-18\nNEEDRESTART-KEXP: 6.1.0-28\nNEEDRESTART-KSTA: 3\nNEEDRESTART-SVC: ssh.service\nNEEDRESTART-SVC: cron.service\nNEEDRESTART-SVC: bad unit;x\n';
		expect(parseNeedrestart(out)).toEqual({ services: ['cron.service', 'ssh.service'], kernelOutdated: true });
		expect(parseNeedrestart('NEEDRESTART-KSTA: 1\n')).toEqual({ services: [], kernelOutdated: false });
	});
});

describe('apt-get -s', () => {
	it('reads installs (with and without an old version) and removals, Conf lines not twice', () => {
		const out = [
			'Reading package lists...',
			'Inst libc6 [2.36-9+deb12u8] (2.36-9+deb12u9 Debian-Security:12/bookworm-security [amd64]) []',
			'Inst linux-image-6.1.0-29-amd64 (6.1.119-1 Debian-Security:12/bookworm-security [amd64])',
			'Remv linux-image-6.1.0-18-amd64 [6.1.76-1]',
			'Conf libc6 (2.36-9+deb12u9 Debian-Security:12/bookworm-security [amd64])'
		].join('\n');
		expect(parseSimulation(out)).toEqual([
			{ action: 'install', name: 'libc6', arch: 'amd64', from: '2.36-9+deb12u8', to: '2.36-9+deb12u9' },
			{ action: 'install', name: 'linux-image-6.1.0-29-amd64', arch: 'amd64', from: null, to: '6.1.119-1' },
			{ action: 'remove', name: 'linux-image-6.1.0-18-amd64', arch: '', from: '6.1.76-1', to: null }
		]);
	});
});
