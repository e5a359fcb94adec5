import { createHash } from 'node:crypto';
import { aptCommand, aptMark, needrestart, newAptModel, type AptModel } from './apt';
import { authorizedKeysCommand } from './authorized-keys';
import { describeCertificate, newSimCertificateRequest, publicKeyOf } from './certificates';
import {
	baseDirectories,
	chmod,
	chown,
	install,
	isDirectory,
	mkdir,
	moveMeta,
	rm,
	stat,
	test,
	type FileMeta
} from './files';
import { git, install as installApp, type SimOrigin, type SimRepo } from './git';
import { nodePaths } from './paths';
import { flotillaSlot, type Slot } from './slots';
import { systemctl } from './systemd';
import { getent, id, newUsersModel, useradd, userdel, type UsersModel } from './users';
import { tokenize, type Token } from './words';

/**
 * What a simulated node is: enough of a Debian host for the commands the console sends. The same
 * scenarios run against real OpenSSH test hosts and against this model (tests/integration/conformance),
 * so the two cannot drift apart unnoticed.
 */
export interface HostModel {
	hostname: string;
	kernel: string;
	files: Map<string, string>;
	/** Mode and owner of the files that are not `644 root root` (./files.ts). */
	meta: Map<string, FileMeta>;
	/** Directories made on the node (and Debian's own), with their mode and owner (./files.ts). */
	dirs: Map<string, FileMeta>;
	/** Accounts and groups (./users.ts). */
	accounts: UsersModel;
	/** Services by unit name: running or not. */
	units: Map<string, 'active' | 'inactive' | 'failed'>;
	/** Units enabled to start at boot (./systemd.ts). */
	enabled: Set<string>;
	/** Git checkouts by directory (e.g. `/opt/backend`), each cloned from its role's origin (./git.ts). */
	repos: Map<string, SimRepo>;
	/** Repositories the node can `git clone`, by URL: a provisioned role's `repo_url` (./git.ts). */
	remotes: Map<string, SimOrigin>;
	/** The appliance health gate's checks (appliance/flotilla-slot `gate`): each passes while its unit is active. */
	gate: { name: string; unit: string }[];
	/** Boots since the model was made; the `reboot` command counts them. */
	bootCount: number;
	/** Packages, holds, the dpkg lock and what needrestart reports (./apt.ts). */
	apt: AptModel;
	/** Files written over SFTP whose bytes are not UTF-8: kept one byte per character (see `storeBytes`). */
	binaryFiles: Set<string>;
	/** SFTP writes go no faster than this (bytes/s), like a slow link; unset: as fast as loopback. */
	linkBytesPerSecond?: number;
	faults: HostFaults;
	/** What a unit's reload or restart does besides marking it active (a TLS endpoint re-reading its files). */
	onReload?: Map<string, () => void>;
	/** Called after the host changed something a real host keeps across restarts (authorized_keys). */
	persist?: () => void;
}

export interface HostFaults {
	/** Connections are refused. */
	refuse?: boolean;
	/** TCP is accepted but the SSH banner never comes. */
	hangBeforeBanner?: boolean;
	/** These commands never finish (until their deadline or a cancel), like the testbed's `hang` fault. */
	hang?: string[];
	/** These commands drop the whole connection, like the testbed's `drop-connection` fault. */
	drop?: string[];
	/** Output lines come 200 ms apart. */
	slowOutput?: boolean;
	/** `systemctl is-active` says failed. */
	failHealth?: boolean;
	/** Boots of these A/B slots fail (true: every boot), like the testbed's `fail-boot` fault. */
	failBoot?: true | Slot[];
	/**
	 * Images (by sha256) whose system does not work once booted: the appliance's service fails after a boot
	 * of a slot holding one, so the health gate fails, as a bad build on a real appliance would.
	 */
	brokenImages?: string[];
	/** The console's command runner (ssh/runner.ts) fails to start, as under a login shell that cannot run it. */
	noRunner?: boolean;
}

export function newHostModel(hostname: string): HostModel {
	return {
		hostname,
		kernel: '6.1.0-28-amd64',
		files: new Map([['/etc/hostname', `${hostname}\n`]]),
		meta: new Map(),
		dirs: baseDirectories(),
		accounts: newUsersModel(),
		units: new Map(),
		enabled: new Set(),
		repos: new Map(),
		remotes: new Map(),
		gate: [],
		bootCount: 0,
		apt: newAptModel(),
		binaryFiles: new Set(),
		faults: {}
	};
}

export const rebootRequiredPath = nodePaths.rebootRequired;

/** What a package's postinst does on Debian when it needs a reboot (the testbed's `requireReboot`). */
export function requireReboot(model: HostModel, packages: string[]): void {
	model.files.set(rebootRequiredPath, '*** System restart required ***\n');
	model.files.set(`${rebootRequiredPath}.pkgs`, packages.map((p) => `${p}\n`).join(''));
}

export interface CommandIO {
	out(line: string): Promise<void>;
	err(line: string): Promise<void>;
	/** Resolves after `ms`, or rejects when the command is killed. */
	sleep(ms: number): Promise<void>;
	/** Resolves only when the command is killed. */
	hang(): Promise<never>;
	/** Drops the SSH connection this command runs on. */
	drop(): Promise<never>;
	/** Drops every connection shortly after this command ends, boots the model, and listens again. */
	reboot(): void;
}

/**
 * Runs one command line: simple commands joined by `;`, `&&` and `||`, each optionally redirected with
 * `>&2`, `2>/dev/null` or `>/dev/null`. Anything else (pipes, background jobs) is refused loudly so that a
 * console command the model does not understand fails a test instead of passing by accident.
 */
export async function runCommandLine(model: HostModel, line: string, io: CommandIO): Promise<number> {
	const keys = await authorizedKeysCommand(model, line, io);
	if (keys !== null) return keys;
	let tokens: Token[];
	try {
		tokens = tokenize(line);
	} catch (err) {
		await io.err(`sh: syntax error: ${(err as Error).message}`);
		return 2;
	}
	let status = 0;
	let skip = false;
	/** Set by `exit N`, which ends the whole line. */
	let exitRequested: number | undefined;
	let command: string[] = [];
	let redirect: 'stderr' | 'none' | { file: string } | null = null;
	/** After `>`: the next word is the file the command's output goes to. */
	let fileNext = false;
	let silenceErr = false;

	/** Set by `cd`, for the rest of the line: Code Sync runs a role's commands in its checkout. */
	let cwd = '/root';
	const runSimple = async (words: string[], cmdIo: CommandIO): Promise<number> => {
		// Leading `NAME=value` words set the command's environment (`LANG=C apt …`): nothing here reads it.
		const first = words.findIndex((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
		if (first < 0) return 0;
		const name = words[first];
		let args = words.slice(first + 1);
		// `env NAME=value… command`: the same as the assignments before a command.
		if (name === 'env') return runSimple(args, cmdIo);
		if (name === 'exit') {
			exitRequested = Number(args[0] ?? status) & 255;
			return exitRequested;
		}
		if (name === 'cd') {
			const dir = args.filter((a) => a !== '--')[0] ?? '/root';
			if (!dir.startsWith('/') || !isDirectory(model, dir)) {
				await cmdIo.err(`bash: line 1: cd: ${dir}: No such file or directory`);
				return 1;
			}
			cwd = dir;
			return 0;
		}
		// Relative paths given to `sh` are read from the working directory, as a shell would.
		if (name === 'sh' && args[0] && !args[0].startsWith('/')) args = [`${cwd}/${args[0]}`, ...args.slice(1)];
		if (model.faults.drop?.includes(name!)) await cmdIo.drop();
		if (model.faults.hang?.includes(name!)) await cmdIo.hang();
		const impl = commands[name!];
		if (!impl) {
			await cmdIo.err(`bash: line 1: ${name}: command not found`);
			return 127;
		}
		return impl(args, cmdIo, model);
	};
	const flush = async () => {
		if (command.length && !skip) {
			// `> file` truncates the file first and collects what the command prints, as a shell would.
			const target = typeof redirect === 'object' && redirect ? redirect.file : null;
			const written: string[] = [];
			if (target !== null) model.files.set(target, '');
			status = await runSimple(command, {
				...io,
				out:
					target !== null
						? async (line) => void written.push(line)
						: redirect === 'none'
							? async () => {}
							: redirect === 'stderr'
								? io.err
								: io.out,
				err: silenceErr ? async () => {} : io.err
			});
			if (target !== null) model.files.set(target, written.map((l) => `${l}\n`).join(''));
		}
		command = [];
		redirect = null;
		silenceErr = false;
	};

	for (const t of tokens) {
		if ('word' in t) {
			if (fileNext) {
				redirect = { file: t.word };
				fileNext = false;
			} else command.push(t.word);
			continue;
		}
		if (fileNext) {
			await io.err(`sh: syntax error near unexpected token '${t.op}'`);
			return 2;
		}
		if (t.op === '>') fileNext = true;
		else if (t.op === '>&2') redirect = 'stderr';
		else if (t.op === '>/dev/null') redirect = 'none';
		else if (t.op === '2>/dev/null') silenceErr = true;
		else if (t.op === '2>&1') continue;
		else if (t.op === ';' || t.op === '&&' || t.op === '||') {
			await flush();
			if (exitRequested !== undefined) return exitRequested;
			skip = (t.op === '&&' && status !== 0) || (t.op === '||' && status === 0);
		} else {
			await io.err(`sh: the simulator does not run '${t.op}'`);
			return 2;
		}
	}
	await flush();
	return exitRequested ?? status;
}

/**
 * A file's bytes. The model keeps text as strings; bytes that are not UTF-8 (an image uploaded over SFTP) are
 * kept one byte per character and listed in `binaryFiles`.
 */
export function bytesOf(model: HostModel, path: string): Buffer {
	const content = model.files.get(path) ?? '';
	return Buffer.from(content, model.binaryFiles.has(path) && !/[\u0100-\uffff]/.test(content) ? 'latin1' : 'utf8');
}

export function storeBytes(model: HostModel, path: string, bytes: Buffer): void {
	const text = bytes.toString('utf8');
	if (Buffer.byteLength(text) === bytes.length && Buffer.from(text).equals(bytes)) {
		model.files.set(path, text);
		model.binaryFiles.delete(path);
	} else {
		model.files.set(path, bytes.toString('latin1'));
		model.binaryFiles.add(path);
	}
}

const sha256Of = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** printf with %s and the escapes the console uses. */
function format(fmt: string, args: string[]): string {
	let i = 0;
	const once = () =>
		fmt.replace(/%s|%%|\\n|\\t|\\\\/g, (m) =>
			m === '%s' ? (args[i++] ?? '') : m === '%%' ? '%' : m === '\\n' ? '\n' : m === '\\t' ? '\t' : '\\'
		);
	let out = once();
	while (i < args.length) out += once();
	return out;
}

async function print(text: string, write: (line: string) => Promise<void>, model: HostModel, io: CommandIO) {
	const lines = text.split('\n');
	const last = lines.pop()!;
	for (const l of lines) {
		if (model.faults.slowOutput) await io.sleep(200);
		await write(l);
	}
	// A last line without a newline still reaches the client (as a shell's output would).
	if (last) await write(last);
}

const commands: Record<string, (args: string[], io: CommandIO, model: HostModel) => Promise<number>> = {
	true: async () => 0,
	false: async () => 1,
	echo: async (args, io, m) => (await print(args.join(' ') + '\n', io.out, m, io), 0),
	printf: async ([fmt = '', ...args], io, m) => (await print(format(fmt, args), io.out, m, io), 0),
	hostname: async (_a, io, m) => (await io.out(m.hostname), 0),
	uname: async (args, io, m) => {
		const all = `Linux ${m.hostname} ${m.kernel} #1 SMP PREEMPT_DYNAMIC Debian ${m.kernel} x86_64 GNU/Linux`;
		await io.out(args.includes('-a') ? all : args.includes('-r') ? m.kernel : 'Linux');
		return 0;
	},
	sleep: async ([secs = '0'], io, m) => {
		await io.sleep(Number(secs) * 1000);
		return 0;
	},
	cat: async (args, io, m) => {
		for (const f of args.filter((a) => a !== '--')) {
			const content = m.files.get(f);
			if (content === undefined) {
				await io.err(`cat: ${f}: No such file or directory`);
				return 1;
			}
			await print(content, io.out, m, io);
		}
		return 0;
	},
	test,
	sha256sum: async (args, io, m) => {
		const f = args.filter((a) => a !== '--')[0] ?? '';
		const content = m.files.get(f);
		if (content === undefined) {
			await io.err(`sha256sum: ${f}: No such file or directory`);
			return 1;
		}
		await io.out(`${sha256Of(bytesOf(m, f))}  ${f}`);
		return 0;
	},
	systemctl: (args, io, m) => systemctl(args, io, m, () => commands.reboot!([], io, m)),
	git,
	sh: async (args, io, m) => {
		if (args.length === 1 && args[0]!.endsWith('/install.sh')) return installApp(args[0]!, io, m);
		await io.err(`sh: the simulator runs only an install.sh of a checkout (got 'sh ${args.join(' ')}')`);
		return 2;
	},
	'flotilla-slot': flotillaSlot,
	'/opt/flotilla/bin/flotilla-slot': flotillaSlot,
	umask: async () => 0,
	cp: async (args, io, m) => fileCommand('cp', args, io, m, false),
	mv: async (args, io, m) => fileCommand('mv', args, io, m, true),
	rm,
	stat,
	chown,
	chmod,
	install,
	mkdir,
	id,
	getent,
	useradd,
	userdel,
	openssl: async (args, io, m) => {
		if (args[0] === 'req') return opensslRequest(args, io, m);
		if (args[0] === 'pkey') return opensslPublicKey(args, io, m);
		const inAt = args.indexOf('-in');
		const file = inAt >= 0 ? args[inAt + 1] : undefined;
		const options = args.filter((_, i) => i !== 0 && i !== inAt && i !== inAt + 1 && args[i] !== '-noout');
		if (args[0] !== 'x509' || !file || !args.includes('-noout')) {
			await io.err(
				`openssl: the simulator runs only 'openssl x509 -in <file> -noout …' (got 'openssl ${args.join(' ')}')`
			);
			return 1;
		}
		const pem = m.files.get(file);
		if (pem === undefined) {
			await io.err(`Could not open file or uri for loading certificate from ${file}`);
			await io.err('Unable to load certificate');
			return 1;
		}
		const lines = describeCertificate(pem, options);
		if (!lines) {
			await io.err(`openssl: the simulator does not answer 'openssl ${args.join(' ')}'`);
			return 1;
		}
		for (const line of lines) await io.out(line);
		return 0;
	},
	reboot: async (_args, io) => {
		io.reboot();
		await io.out('Rebooting.');
		return 0;
	},
	apt: (args, io, m) => aptCommand('apt', args, io, m),
	'apt-get': (args, io, m) => aptCommand('apt-get', args, io, m),
	'apt-mark': aptMark,
	needrestart
};

/** `cp [-p] [--] from to` and `mv [-f] [--] from to` on the model's files. */
async function fileCommand(
	name: 'cp' | 'mv',
	args: string[],
	io: CommandIO,
	m: HostModel,
	move: boolean
): Promise<number> {
	const [from, to, ...rest] = args.filter((a) => !a.startsWith('-'));
	if (!from || !to || rest.length) {
		await io.err(`${name}: the simulator copies or moves one file to another (got '${name} ${args.join(' ')}')`);
		return 1;
	}
	const content = m.files.get(from);
	if (content === undefined) {
		await io.err(`${name}: cannot stat '${from}': No such file or directory`);
		return 1;
	}
	m.files.set(to, content);
	// A move keeps the file's mode and owner, as does `cp -p`; another copy is a new file of root's.
	if (move) {
		m.files.delete(from);
		moveMeta(m, from, to);
	} else if (args.includes('-p') && m.meta.has(from)) m.meta.set(to, m.meta.get(from)!);
	else m.meta.delete(to);
	return 0;
}

/** `openssl pkey -pubout -in <key>`, how a rotation without an endpoint checks that the key belongs to the certificate. */
async function opensslPublicKey(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const inAt = args.indexOf('-in');
	const file = inAt >= 0 ? args[inAt + 1] : undefined;
	if (!file || !args.includes('-pubout') || args.length !== 4) {
		await io.err(`openssl: the simulator does not answer 'openssl ${args.join(' ')}'`);
		return 1;
	}
	const pemText = m.files.get(file);
	if (pemText === undefined) {
		await io.err(`Could not open file or uri for loading key from ${file}`);
		return 1;
	}
	let lines: string[];
	try {
		lines = publicKeyOf(pemText);
	} catch {
		await io.err(`Could not read key from ${file}`);
		return 1;
	}
	for (const line of lines) await io.out(line);
	return 0;
}

/**
 * `openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout <key> -out <csr> -subj /CN=<name>`,
 * the request a rotation makes on the node: anything else (another key type, `-x509`) fails loudly.
 */
async function opensslRequest(args: string[], io: CommandIO, m: HostModel): Promise<number> {
	const value = (flag: string) => {
		const i = args.indexOf(flag);
		return i >= 0 ? args[i + 1] : undefined;
	};
	const keyOut = value('-keyout');
	const out = value('-out');
	const subject = /^\/CN=([^/]+)$/.exec(value('-subj') ?? '');
	const known =
		args.includes('-new') &&
		!args.includes('-x509') &&
		value('-newkey') === 'ec' &&
		value('-pkeyopt') === 'ec_paramgen_curve:P-256' &&
		args.includes('-nodes');
	if (!known || !keyOut || !out || !subject) {
		await io.err(`openssl: the simulator does not answer 'openssl ${args.join(' ')}'`);
		return 1;
	}
	const made = newSimCertificateRequest(subject[1]!);
	m.files.set(keyOut, made.key);
	m.files.set(out, made.csr);
	return 0;
}
