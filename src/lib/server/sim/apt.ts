import { nodePaths } from './paths';
import type { CommandIO, HostModel } from './host';

/**
 * apt, apt-get, apt-mark and needrestart on a simulated node, printing exactly what the testbed's stand-ins
 * print (tests/testbed/host/bin/apt-get), which follow apt's own formats under LANG=C. The conformance test
 * runs the same commands on both and compares the output.
 */
export interface SimPackage {
	name: string;
	arch: string;
	installed: string;
	candidate: string;
	/** The suites offering the candidate, e.g. `bookworm-security`. */
	suites: string[];
}

export interface AptModel {
	packages: SimPackage[];
	held: Set<string>;
	/** Services left on deleted libraries by an upgrade, until they restart (or the node reboots). */
	restartServices: Set<string>;
	/** needrestart is installed. */
	needrestart: boolean;
	/** A process holding the dpkg frontend lock (as unattended-upgrades does while it runs). */
	lockHolder: { pid: number; comm: string } | null;
}

export function newAptModel(): AptModel {
	return { packages: [], held: new Set(), restartServices: new Set(), needrestart: true, lockHolder: null };
}

const LOCK = '/var/lib/dpkg/lock-frontend';
const byName = (a: SimPackage, b: SimPackage) =>
	a.name === b.name ? (a.arch < b.arch ? -1 : 1) : a.name < b.name ? -1 : 1;
const upgradable = (m: AptModel) => m.packages.filter((p) => p.installed !== p.candidate).sort(byName);
const originOf = (suite: string) =>
	suite.includes('-security') ? `Debian-Security:12/${suite}` : `Debian:12.8/${suite}`;

const REBOOT_PACKAGES = /^(linux-image-.*|libc6|systemd|dbus)$/;
const LIBRARY_PACKAGES = /^(libc6|libssl3|openssl|libsystemd0|zlib1g)$/;

interface Options {
	verb: string | undefined;
	packages: string[];
	simulate: boolean;
	lockTimeout: number;
	upgradableFlag: boolean;
}

function readOptions(args: string[]): Options {
	const o: Options = { verb: undefined, packages: [], simulate: false, lockTimeout: 0, upgradableFlag: false };
	for (let i = 0; i < args.length; i++) {
		const a = args[i]!;
		if (a === '-o') {
			const m = /^D[Pp]kg::Lock::Timeout=(\d+)$/.exec(args[++i] ?? '');
			if (m) o.lockTimeout = Number(m[1]);
		} else if (['-s', '--simulate', '--dry-run', '--just-print', '--no-act'].includes(a)) o.simulate = true;
		else if (a === '--upgradable') o.upgradableFlag = true;
		else if (a.startsWith('-')) continue;
		else if (o.verb === undefined) o.verb = a;
		else o.packages.push(a);
	}
	return o;
}

async function takeLock(m: HostModel, timeout: number, io: CommandIO): Promise<boolean> {
	for (let waited = 0; m.apt.lockHolder; waited++) {
		const { pid, comm } = m.apt.lockHolder;
		if (waited >= timeout) {
			await io.err(`E: Could not get lock ${LOCK}. It is held by process ${pid} (${comm})`);
			await io.err('N: Be aware that removing the lock file is not a solution and may break your system.');
			await io.err(`E: Unable to acquire the dpkg frontend lock (${LOCK}), is another process using it?`);
			return false;
		}
		await io.out(
			`Waiting for cache lock: Could not get lock ${LOCK}. It is held by process ${pid} (${comm})... ${waited}s`
		);
		await io.sleep(1000);
	}
	return true;
}

function install(m: HostModel, list: SimPackage[]): string[] {
	const lines: string[] = [];
	for (const p of list) {
		lines.push(`Preparing to unpack .../${p.name}_${p.candidate}_${p.arch}.deb ...`);
		lines.push(`Unpacking ${p.name}:${p.arch} (${p.candidate}) over (${p.installed}) ...`);
	}
	for (const p of list) lines.push(`Setting up ${p.name}:${p.arch} (${p.candidate}) ...`);
	for (const p of list) {
		p.installed = p.candidate;
		if (REBOOT_PACKAGES.test(p.name)) {
			m.files.set(nodePaths.rebootRequired, '*** System restart required ***\n');
			m.files.set(
				nodePaths.rebootRequiredPackages,
				(m.files.get(nodePaths.rebootRequiredPackages) ?? '') + `${p.name}\n`
			);
		}
		if (LIBRARY_PACKAGES.test(p.name))
			for (const unit of ['cron.service', 'ssh.service']) m.apt.restartServices.add(unit);
	}
	return lines;
}

async function runPlan(m: HostModel, o: Options, list: SimPackage[], kept: string[], io: CommandIO): Promise<number> {
	await io.out('Reading package lists...');
	await io.out('Building dependency tree...');
	await io.out('Reading state information...');
	if (o.verb !== 'install') await io.out('Calculating upgrade...');
	if (kept.length) {
		await io.out('The following packages have been kept back:');
		await io.out(`  ${kept.join(' ')}`);
	}
	if (list.length) {
		await io.out('The following packages will be upgraded:');
		await io.out(`  ${list.map((p) => p.name).join(' ')}`);
	}
	await io.out(`${list.length} upgraded, 0 newly installed, 0 to remove and ${kept.length} not upgraded.`);
	if (o.simulate) {
		for (const p of list)
			await io.out(`Inst ${p.name} [${p.installed}] (${p.candidate} ${originOf(p.suites[0]!)} [${p.arch}])`);
		for (const p of list) await io.out(`Conf ${p.name} (${p.candidate} ${originOf(p.suites[0]!)} [${p.arch}])`);
		return 0;
	}
	if (!(await takeLock(m, o.lockTimeout, io))) return 100;
	for (const line of install(m, list)) await io.out(line);
	return 0;
}

export async function aptCommand(
	name: 'apt' | 'apt-get',
	args: string[],
	io: CommandIO,
	m: HostModel
): Promise<number> {
	const o = readOptions(args);
	switch (o.verb) {
		case 'update':
			await io.out('Hit:1 http://deb.debian.org/debian bookworm InRelease');
			await io.out('Hit:2 http://security.debian.org/debian-security bookworm-security InRelease');
			await io.out('Reading package lists...');
			return 0;
		case 'upgrade':
		case 'dist-upgrade':
		case 'full-upgrade': {
			const all = upgradable(m.apt);
			const kept = all.filter((p) => m.apt.held.has(p.name)).map((p) => p.name);
			return runPlan(
				m,
				o,
				all.filter((p) => !m.apt.held.has(p.name)),
				kept,
				io
			);
		}
		case 'install': {
			const missing = o.packages.filter((n) => !m.apt.packages.some((p) => p.name === n));
			if (missing.length) {
				await io.out('Reading package lists...');
				await io.out('Building dependency tree...');
				await io.out('Reading state information...');
				for (const n of missing) await io.err(`E: Unable to locate package ${n}`);
				return 100;
			}
			return runPlan(
				m,
				o,
				upgradable(m.apt).filter((p) => o.packages.includes(p.name)),
				[],
				io
			);
		}
		case 'list':
			if (!o.upgradableFlag) {
				await io.err(`${name} (simulated): only 'apt list --upgradable' is modelled`);
				return 100;
			}
			if (name === 'apt') {
				await io.err('WARNING: apt does not have a stable CLI interface. Use with caution in scripts.');
				await io.err('');
			}
			await io.out('Listing...');
			for (const p of upgradable(m.apt)) {
				await io.out(`${p.name}/${p.suites.join(',')} ${p.candidate} ${p.arch} [upgradable from: ${p.installed}]`);
			}
			return 0;
		default:
			await io.err(`${name} (simulated): unsupported command '${o.verb ?? ''}'`);
			return 100;
	}
}

export async function aptMark(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const [verb, ...rest] = args;
	const names = rest.filter((a) => a !== '--');
	switch (verb) {
		case 'hold':
			for (const n of names) {
				await io.out(m.apt.held.has(n) ? `${n} was already set on hold.` : `${n} set on hold.`);
				m.apt.held.add(n);
			}
			return 0;
		case 'unhold':
			for (const n of names) {
				await io.out(m.apt.held.delete(n) ? `Canceled hold on ${n}.` : `${n} was already not on hold.`);
			}
			return 0;
		case 'showhold':
			for (const n of [...m.apt.held].sort()) await io.out(n);
			return 0;
		default:
			await io.err(`apt-mark (simulated): unsupported command '${verb ?? ''}'`);
			return 100;
	}
}

export async function needrestart(_args: string[], io: CommandIO, m: HostModel): Promise<number> {
	if (!m.apt.needrestart) {
		await io.err('bash: line 1: needrestart: command not found');
		return 127;
	}
	await io.out('NEEDRESTART-VER: 3.6');
	const kernel = /^linux-image/m.test(m.files.get(nodePaths.rebootRequiredPackages) ?? '');
	await io.out(`NEEDRESTART-KSTA: ${kernel ? 3 : 1}`);
	for (const unit of [...m.apt.restartServices].sort()) await io.out(`NEEDRESTART-SVC: ${unit}`);
	return 0;
}
