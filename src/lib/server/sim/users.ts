import type { CommandIO, HostModel } from './host';

/**
 * The accounts of a simulated node, as Debian 12's passwd and shadow tools keep them: what provisioning's
 * secrets and clean phases ask (`id -u`, `useradd --system`, `userdel`) and what a reader checks with
 * `getent`. Debian's login.defs applies: every new account gets a group of its own name (USERGROUPS_ENAB), a
 * system account takes the highest free id below 1000, and `userdel` removes that group with the account.
 */
export interface SimUser {
	name: string;
	uid: number;
	gid: number;
	home: string;
	shell: string;
}

export interface UsersModel {
	users: Map<string, SimUser>;
	/** Groups by name: their gid. */
	groups: Map<string, number>;
}

const SYS_ID_MAX = 999;
const SYS_ID_MIN = 100;

/** The accounts a fresh Debian 12 install has that the console may meet. */
export function newUsersModel(): UsersModel {
	const base: SimUser[] = [
		{ name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/bash' },
		{ name: 'daemon', uid: 1, gid: 1, home: '/usr/sbin', shell: '/usr/sbin/nologin' },
		{ name: 'bin', uid: 2, gid: 2, home: '/bin', shell: '/usr/sbin/nologin' },
		{ name: 'sys', uid: 3, gid: 3, home: '/dev', shell: '/usr/sbin/nologin' },
		{ name: 'www-data', uid: 33, gid: 33, home: '/var/www', shell: '/usr/sbin/nologin' },
		{ name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent', shell: '/usr/sbin/nologin' }
	];
	const groups: [string, number][] = [
		['root', 0],
		['daemon', 1],
		['bin', 2],
		['sys', 3],
		['adm', 4],
		['www-data', 33],
		['nogroup', 65534]
	];
	return { users: new Map(base.map((u) => [u.name, u])), groups: new Map(groups) };
}

export const userExists = (m: HostModel, name: string) => m.accounts.users.has(name);
export const groupExists = (m: HostModel, name: string) => m.accounts.groups.has(name);

/** The highest id below 1000 that `taken` does not hold, as useradd picks one for a system account. */
function freeSystemId(taken: Iterable<number>): number | null {
	const used = new Set(taken);
	for (let id = SYS_ID_MAX; id >= SYS_ID_MIN; id--) if (!used.has(id)) return id;
	return null;
}

function passwdLine(u: SimUser): string {
	return `${u.name}:x:${u.uid}:${u.gid}::${u.home}:${u.shell}`;
}

/** `id [-u|-g|-n] [--] [user]`. */
export async function id(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const flags = args.filter((a) => a.startsWith('-') && a !== '--');
	const names = args.filter((a) => !a.startsWith('-'));
	const user = m.accounts.users.get(names[0] ?? 'root');
	if (!user) {
		await io.err(`id: '${names[0]}': no such user`);
		return 1;
	}
	const groupName = [...m.accounts.groups].find(([, gid]) => gid === user.gid)?.[0] ?? String(user.gid);
	if (flags.includes('-u')) await io.out(flags.includes('-n') ? user.name : String(user.uid));
	else if (flags.includes('-g')) await io.out(flags.includes('-n') ? groupName : String(user.gid));
	else if (flags.length) {
		await io.err(`id (simulated): unsupported options ${flags.join(' ')}`);
		return 1;
	} else {
		await io.out(`uid=${user.uid}(${user.name}) gid=${user.gid}(${groupName}) groups=${user.gid}(${groupName})`);
	}
	return 0;
}

/** `getent passwd|group NAME`: the database line, or exit 2 (not found) without a word. */
export async function getent(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const [db, name, ...rest] = args.filter((a) => a !== '--');
	if ((db !== 'passwd' && db !== 'group') || !name || rest.length) {
		await io.err(`getent (simulated): only 'getent passwd|group NAME' is modelled (got 'getent ${args.join(' ')}')`);
		return 1;
	}
	if (db === 'passwd') {
		const user = m.accounts.users.get(name);
		if (!user) return 2;
		await io.out(passwdLine(user));
		return 0;
	}
	const gid = m.accounts.groups.get(name);
	if (gid === undefined) return 2;
	await io.out(`${name}:x:${gid}:`);
	return 0;
}

/**
 * `useradd --system --no-create-home --home-dir DIR --shell SHELL [--] NAME` (and the short forms `-r -M -d -s`):
 * the options provisioning uses. Anything else is refused loudly rather than half-modelled.
 */
export async function useradd(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	let system = false;
	let home: string | undefined;
	let shell = '/bin/sh';
	const names: string[] = [];
	for (let i = 0; i < args.length; i++) {
		const a = args[i]!;
		if (a === '--') {
			names.push(...args.slice(i + 1));
			break;
		}
		if (a === '--system' || a === '-r') system = true;
		else if (a === '--no-create-home' || a === '-M') continue;
		else if (a === '--home-dir' || a === '-d') home = args[++i];
		else if (a === '--shell' || a === '-s') shell = args[++i] ?? shell;
		else if (a.startsWith('-')) {
			await io.err(`useradd (simulated): unsupported option ${a}`);
			return 2;
		} else names.push(a);
	}
	const [name, ...extra] = names;
	if (!name || extra.length) {
		await io.err('Usage: useradd [options] LOGIN');
		return 2;
	}
	if (!/^[a-z_][a-z0-9_-]*\$?$/.test(name) || name.length > 32) {
		await io.err(`useradd: invalid user name '${name}': use --badname to ignore`);
		return 3;
	}
	if (!system) {
		await io.err('useradd (simulated): only system accounts (--system) are modelled');
		return 2;
	}
	if (m.accounts.users.has(name)) {
		await io.err(`useradd: user '${name}' already exists`);
		return 9;
	}
	if (m.accounts.groups.has(name)) {
		await io.err(`useradd: group ${name} exists - if you want to add this user to that group, use -g.`);
		return 9;
	}
	const uid = freeSystemId([...m.accounts.users.values()].map((u) => u.uid));
	const gid = freeSystemId(m.accounts.groups.values());
	if (uid === null || gid === null) {
		await io.err("useradd: can't create user");
		return 4;
	}
	m.accounts.groups.set(name, gid);
	m.accounts.users.set(name, { name, uid, gid, home: home ?? `/home/${name}`, shell });
	return 0;
}

/** `userdel [--] NAME`: the account, and its own group when no other account has it as primary group. */
export async function userdel(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const names = args.filter((a) => a !== '--');
	if (names.some((a) => a.startsWith('-')) || names.length !== 1) {
		await io.err(`userdel (simulated): only 'userdel NAME' is modelled (got 'userdel ${args.join(' ')}')`);
		return 2;
	}
	const user = m.accounts.users.get(names[0]!);
	if (!user) {
		await io.err(`userdel: user '${names[0]}' does not exist`);
		return 6;
	}
	m.accounts.users.delete(user.name);
	const ownGroup = m.accounts.groups.get(user.name);
	const stillUsed = [...m.accounts.users.values()].some((u) => u.gid === ownGroup);
	if (ownGroup === user.gid && !stillUsed) m.accounts.groups.delete(user.name);
	return 0;
}
