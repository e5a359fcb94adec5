import type { CommandIO, HostModel } from './host';
import { groupExists, userExists } from './users';

/**
 * Directories, modes and owners on a simulated node, answering what provisioning asks of a file system
 * (docs/provisioning.md): `stat -c '%a %U %G'`, `chown`, `chmod`, `install -d`, `mkdir`, `test`, `rm -rf`. The
 * model keeps file contents in HostModel.files; this keeps what a real file system keeps beside them. A
 * directory exists when it was made, when a file or checkout lies below it, or when every Debian host has it.
 */
export interface FileMeta {
	/** Permission bits, e.g. 0o640. */
	mode: number;
	owner: string;
	group: string;
}

const FILE_DEFAULT: FileMeta = { mode: 0o644, owner: 'root', group: 'root' };
const DIR_DEFAULT: FileMeta = { mode: 0o755, owner: 'root', group: 'root' };

/** The directories of a fresh Debian 12 host that the console's commands may meet. */
export function baseDirectories(): Map<string, FileMeta> {
	const dirs = ['/', '/bin', '/boot', '/dev', '/etc', '/etc/systemd', '/etc/systemd/system', '/home', '/opt'];
	const more = ['/run', '/usr', '/usr/bin', '/usr/sbin', '/var', '/var/lib', '/var/log', '/var/run', '/srv'];
	const map = new Map([...dirs, ...more].map((d) => [d, { ...DIR_DEFAULT }]));
	map.set('/root', { mode: 0o700, owner: 'root', group: 'root' });
	map.set('/tmp', { mode: 0o1777, owner: 'root', group: 'root' });
	return map;
}

/** `/a/b/` and `/a//b` as `/a/b`. */
function normal(path: string): string {
	const p = path.replace(/\/+/g, '/');
	return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

const parentOf = (path: string) => path.slice(0, path.lastIndexOf('/')) || '/';
const below = (path: string, dir: string) => path.startsWith(dir === '/' ? '/' : `${dir}/`);

export function isDirectory(m: HostModel, path: string): boolean {
	const p = normal(path);
	if (m.dirs.has(p)) return true;
	for (const dir of m.repos.keys()) if (dir === p || below(dir, p) || p === `${dir}/.git`) return true;
	for (const f of m.files.keys()) if (below(f, p)) return true;
	for (const d of m.dirs.keys()) if (below(d, p)) return true;
	return false;
}

export const pathExists = (m: HostModel, path: string) => m.files.has(normal(path)) || isDirectory(m, path);

function metaOf(m: HostModel, path: string): FileMeta | null {
	const p = normal(path);
	if (m.files.has(p)) return m.meta.get(p) ?? FILE_DEFAULT;
	if (isDirectory(m, p)) return m.dirs.get(p) ?? DIR_DEFAULT;
	return null;
}

function setMeta(m: HostModel, path: string, change: Partial<FileMeta>): void {
	const p = normal(path);
	if (m.files.has(p)) m.meta.set(p, { ...(m.meta.get(p) ?? FILE_DEFAULT), ...change });
	else m.dirs.set(p, { ...(m.dirs.get(p) ?? DIR_DEFAULT), ...change });
}

/** A new file's mode and owner (an SFTP upload creates it with the mode it asks for, owned by root). */
export function createdFile(m: HostModel, path: string, mode: number): void {
	m.meta.set(normal(path), { ...FILE_DEFAULT, mode: mode & 0o7777 });
}

/** What `mv` takes along with a file's content: its mode and owner. */
export function moveMeta(m: HostModel, from: string, to: string): void {
	const meta = m.meta.get(normal(from));
	m.meta.delete(normal(from));
	if (meta) m.meta.set(normal(to), meta);
	else m.meta.delete(normal(to));
}

/** Whether anything (a file, a directory, a checkout) lies below `dir`. */
export function hasEntries(m: HostModel, dir: string): boolean {
	const p = normal(dir);
	return [m.files, m.dirs, m.repos].some((map) => [...map.keys()].some((key) => below(key, p)));
}

/** Makes a directory and any missing parents with the default mode; false when a file stands in the way. */
export function makeDirectories(m: HostModel, path: string): boolean {
	const p = normal(path);
	if (m.files.has(p)) return false;
	if (p === '/' || isDirectory(m, p)) return true;
	if (!makeDirectories(m, parentOf(p))) return false;
	m.dirs.set(p, { ...DIR_DEFAULT });
	return true;
}

/** Everything at and below `path`: files, directories, checkouts. */
function removeTree(m: HostModel, path: string): void {
	const p = normal(path);
	for (const map of [m.files, m.meta, m.dirs, m.repos] as Map<string, unknown>[]) {
		for (const key of [...map.keys()]) if (key === p || below(key, p)) map.delete(key);
	}
	for (const f of [...m.binaryFiles]) if (f === p || below(f, p)) m.binaryFiles.delete(f);
}

/** Splits `cmd [-flags…] [--] operands…` into its single-letter flags and operands. */
function parse(args: string[]): { flags: Set<string>; operands: string[] } {
	const flags = new Set<string>();
	const operands: string[] = [];
	for (let i = 0; i < args.length; i++) {
		const a = args[i]!;
		if (a === '--') {
			operands.push(...args.slice(i + 1));
			break;
		}
		if (/^-[A-Za-z]+$/.test(a)) for (const c of a.slice(1)) flags.add(c);
		else operands.push(a);
	}
	return { flags, operands };
}

const FORMAT = /%[aUGns%]/g;

/** `stat -c FORMAT [--] PATH…` with %a (octal mode), %U, %G (owner and group names), %n (name) and %s (size). */
export async function stat(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const at = args.findIndex((a) => a === '-c' || a === '--format');
	const format = at >= 0 ? args[at + 1] : undefined;
	const paths = args.filter((a, i) => i !== at && i !== at + 1 && a !== '--');
	if (format === undefined || format.replace(FORMAT, '').includes('%') || paths.some((p) => p.startsWith('-'))) {
		await io.err(`stat (simulated): only 'stat -c FORMAT' with %a %U %G %n %s is modelled (got '${args.join(' ')}')`);
		return 1;
	}
	let status = 0;
	for (const path of paths) {
		const meta = metaOf(m, path);
		if (!meta) {
			await io.err(`stat: cannot statx '${path}': No such file or directory`);
			status = 1;
			continue;
		}
		const size = m.files.has(normal(path)) ? Buffer.byteLength(m.files.get(normal(path))!) : 4096;
		const fields: Record<string, string> = {
			'%a': meta.mode.toString(8),
			'%U': meta.owner,
			'%G': meta.group,
			'%n': path,
			'%s': String(size),
			'%%': '%'
		};
		await io.out(format.replace(FORMAT, (f) => fields[f]!));
	}
	return status;
}

/** `chown [--] OWNER[:GROUP] PATH…`. */
export async function chown(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const { flags, operands } = parse(args);
	const [spec, ...paths] = operands;
	if (flags.size || !spec || !paths.length) {
		await io.err(`chown (simulated): only 'chown OWNER[:GROUP] PATH…' is modelled (got 'chown ${args.join(' ')}')`);
		return 1;
	}
	const [owner, group] = spec.split(':');
	if (owner && !userExists(m, owner)) {
		await io.err(`chown: invalid user: '${spec}'`);
		return 1;
	}
	if (group && !groupExists(m, group)) {
		await io.err(`chown: invalid group: '${spec}'`);
		return 1;
	}
	let status = 0;
	for (const path of paths) {
		if (!pathExists(m, path)) {
			await io.err(`chown: cannot access '${path}': No such file or directory`);
			status = 1;
			continue;
		}
		setMeta(m, path, { ...(owner ? { owner } : {}), ...(group ? { group } : {}) });
	}
	return status;
}

/** `chmod [--] OCTAL PATH…`. */
export async function chmod(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const { flags, operands } = parse(args);
	const [mode, ...paths] = operands;
	if (flags.size || !mode || !/^[0-7]{1,4}$/.test(mode) || !paths.length) {
		await io.err(`chmod (simulated): only 'chmod OCTAL PATH…' is modelled (got 'chmod ${args.join(' ')}')`);
		return 1;
	}
	let status = 0;
	for (const path of paths) {
		if (!pathExists(m, path)) {
			await io.err(`chmod: cannot access '${path}': No such file or directory`);
			status = 1;
			continue;
		}
		setMeta(m, path, { mode: parseInt(mode, 8) });
	}
	return status;
}

/** `install -d [-m MODE] [-o OWNER] [-g GROUP] [--] DIR…`: the directories (with parents), then mode and owner. */
export async function install(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const want: Partial<FileMeta> = {};
	let directories = false;
	const dirs: string[] = [];
	for (let i = 0; i < args.length; i++) {
		const a = args[i]!;
		if (a === '--') {
			dirs.push(...args.slice(i + 1));
			break;
		}
		if (a === '-d') directories = true;
		else if (a === '-m' && /^[0-7]{1,4}$/.test(args[i + 1] ?? '')) want.mode = parseInt(args[++i]!, 8);
		else if (a === '-o') want.owner = args[++i];
		else if (a === '-g') want.group = args[++i];
		else if (a.startsWith('-')) {
			await io.err(`install (simulated): unsupported option ${a}`);
			return 1;
		} else dirs.push(a);
	}
	if (!directories || !dirs.length) {
		await io.err(`install (simulated): only 'install -d' is modelled (got 'install ${args.join(' ')}')`);
		return 1;
	}
	if (want.owner !== undefined && !userExists(m, want.owner)) {
		await io.err(`install: invalid user '${want.owner}'`);
		return 1;
	}
	if (want.group !== undefined && !groupExists(m, want.group)) {
		await io.err(`install: invalid group '${want.group}'`);
		return 1;
	}
	for (const dir of dirs) {
		if (!makeDirectories(m, dir)) {
			await io.err(`install: cannot create directory '${dir}': File exists`);
			return 1;
		}
		setMeta(m, dir, want);
	}
	return 0;
}

/** `mkdir [-p] [--] DIR…`. */
export async function mkdir(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const { flags, operands } = parse(args);
	if ([...flags].some((f) => f !== 'p') || !operands.length) {
		await io.err(`mkdir (simulated): only 'mkdir [-p] DIR…' is modelled (got 'mkdir ${args.join(' ')}')`);
		return 1;
	}
	let status = 0;
	for (const dir of operands) {
		const exists = pathExists(m, dir);
		const parentMissing = !isDirectory(m, parentOf(normal(dir)));
		if ((exists && !(flags.has('p') && isDirectory(m, dir))) || (!flags.has('p') && parentMissing)) {
			await io.err(`mkdir: cannot create directory '${dir}': ${exists ? 'File exists' : 'No such file or directory'}`);
			status = 1;
			continue;
		}
		if (!makeDirectories(m, dir)) {
			await io.err(`mkdir: cannot create directory '${dir}': Not a directory`);
			status = 1;
		}
	}
	return status;
}

/** `rm [-f] [-r] [--] PATH…`: a directory only with -r, and then everything below it. */
export async function rm(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const { flags, operands } = parse(args);
	let status = 0;
	for (const path of operands) {
		if (m.files.has(normal(path))) {
			removeTree(m, path);
		} else if (isDirectory(m, path)) {
			if (!flags.has('r') && !flags.has('R')) {
				await io.err(`rm: cannot remove '${path}': Is a directory`);
				status = 1;
			} else removeTree(m, path);
		} else if (!flags.has('f')) {
			await io.err(`rm: cannot remove '${path}': No such file or directory`);
			status = 1;
		}
	}
	return status;
}

/** `test -e|-f|-d|-s PATH`. */
export async function test(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const [flag, path, ...rest] = args;
	if (path === undefined || rest.length) return 2;
	const p = normal(path);
	switch (flag) {
		case '-e':
			return pathExists(m, p) ? 0 : 1;
		case '-f':
			return m.files.has(p) ? 0 : 1;
		case '-d':
			return !m.files.has(p) && isDirectory(m, p) ? 0 : 1;
		case '-s':
			return m.files.get(p) || (!m.files.has(p) && isDirectory(m, p)) ? 0 : 1;
		default:
			await io.err(`test (simulated): unsupported test ${flag}`);
			return 2;
	}
}
