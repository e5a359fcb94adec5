/**
 * Reading what apt, dpkg and needrestart print on a node (docs/system-updates.md, "Scan"). Pure functions:
 * the scan runs the commands under `LANG=C`, so the formats below are apt's untranslated ones.
 */

export interface PendingPackage {
	name: string;
	arch: string;
	installed: string;
	candidate: string;
	/** The archives (suites) that offer the candidate, as apt lists them (`bookworm-security`, `stable`). */
	suites: string[];
	security: boolean;
	/** Why it counts as a security update (the pocket that offers it); null when it does not. */
	securityReason: string | null;
}

/** `name/suite[,suite…] candidate arch [upgradable from: installed]`, one per upgradable package. */
const UPGRADABLE = /^([a-z0-9][a-z0-9+.-]*)\/(\S+) (\S+) (\S+) \[upgradable from: ([^\]\s]+)\]$/;

/**
 * Debian and Ubuntu publish security fixes in their own pocket: `<codename>-security` (Debian 11 and later,
 * every Ubuntu release, Ubuntu Pro's `esm-*-security`), and `<codename>/updates` on Debian 10 and older.
 */
export function securityReasonOf(suites: string[]): string | null {
	const pocket = suites.find((s) => /-security$/.test(s) || /^[a-z]+\/updates$/.test(s));
	return pocket ? `offered by the security pocket ${pocket}` : null;
}

/**
 * Parses `apt list --upgradable`. Lines apt prints around the list ("Listing...", a warning that its CLI is
 * not stable, notes) are not packages and are left out; so is anything else that does not have the exact
 * shape, so a garbled line can never become a package name that later reaches a command line.
 */
export function parseUpgradable(stdout: string): PendingPackage[] {
	const out: PendingPackage[] = [];
	for (const raw of stdout.split('\n')) {
		const m = UPGRADABLE.exec(raw.trim());
		if (!m) continue;
		const [, name, suiteList, candidate, arch, installed] = m as unknown as string[];
		const suites = suiteList!.split(',').filter(Boolean);
		const reason = securityReasonOf(suites);
		out.push({
			name: name!,
			arch: arch!,
			installed: installed!,
			candidate: candidate!,
			suites,
			security: reason !== null,
			securityReason: reason
		});
	}
	return out.sort((a, b) => a.name.localeCompare(b.name) || a.arch.localeCompare(b.arch));
}

/** `/var/run/reboot-required.pkgs`: one package per line, possibly repeated. */
export function parseRebootPackages(text: string): string[] {
	return [
		...new Set(
			text
				.split('\n')
				.map((l) => l.trim())
				.filter((l) => /^[a-z0-9][a-z0-9+.-]*$/.test(l))
		)
	].sort();
}

export interface NeedrestartReport {
	/** Services running with deleted libraries, which a restart (or reboot) would renew. */
	services: string[];
	/** The running kernel is older than the newest installed one (needrestart's KSTA 2 or 3). */
	kernelOutdated: boolean;
}

/** `needrestart -b` (batch mode): `NEEDRESTART-SVC: unit` lines and `NEEDRESTART-KSTA: n`. */
export function parseNeedrestart(stdout: string): NeedrestartReport {
	const services = new Set<string>();
	let kernelOutdated = false;
	for (const line of stdout.split('\n')) {
		const m = /^NEEDRESTART-(\w+):\s*(.*)$/.exec(line.trim());
		if (!m) continue;
		if (m[1] === 'SVC' && /^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]*$/.test(m[2]!)) services.add(m[2]!);
		if (m[1] === 'KSTA') kernelOutdated = Number(m[2]) >= 2;
	}
	return { services: [...services].sort(), kernelOutdated };
}

export interface SimulatedChange {
	action: 'install' | 'remove';
	name: string;
	arch: string;
	/** The version installed now (null for a new package). */
	from: string | null;
	/** The version it would become (null for a removal). */
	to: string | null;
}

/**
 * `apt-get -s` prints what it would do as `Inst name [old] (new origin [arch])` and `Remv name [old]`
 * lines; `Conf` lines repeat the `Inst` ones. A package apt would keep back is simply absent.
 */
export function parseSimulation(stdout: string): SimulatedChange[] {
	const out: SimulatedChange[] = [];
	for (const raw of stdout.split('\n')) {
		const line = raw.trim();
		const inst = /^Inst ([a-z0-9][a-z0-9+.-]*)(?::(\S+))? (?:\[(\S+)\] )?\((\S+) .*\[(\S+)\]\)/.exec(line);
		if (inst) {
			out.push({ action: 'install', name: inst[1]!, arch: inst[2] ?? inst[5]!, from: inst[3] ?? null, to: inst[4]! });
			continue;
		}
		const remv = /^Remv ([a-z0-9][a-z0-9+.-]*)(?::(\S+))? \[(\S+)\]/.exec(line);
		if (remv) out.push({ action: 'remove', name: remv[1]!, arch: remv[2] ?? '', from: remv[3]!, to: null });
	}
	return out;
}
