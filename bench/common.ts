/**
 * What every benchmark in bench/ shares: running the other tools, medians, the machine description, and
 * writing a section of docs/benchmarks.md without touching the others.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { format, resolveConfig } from 'prettier';
import { writeInventories } from '../tests/testbed/inventory.ts';
import type { Testbed } from '../tests/testbed/testbed.ts';

export const run = promisify(execFile);

const docsPath = new URL('../docs/benchmarks.md', import.meta.url).pathname;

/** Runs a tool (with `input` on its stdin); a non-zero exit fails with the tail of what it printed. */
export async function tool(file: string, args: string[], env?: NodeJS.ProcessEnv, input?: string): Promise<string> {
	try {
		const running = run(file, args, { env, maxBuffer: 64 << 20 });
		if (input !== undefined) running.child.stdin?.end(input);
		const { stdout } = await running;
		return stdout;
	} catch (error) {
		const e = error as Error & { stdout?: string; stderr?: string };
		const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
		throw new Error(`${file} ${args.join(' ')} failed: ${e.message}\n${output}`, { cause: error });
	}
}

export function secondsSince(start: number): number {
	return (performance.now() - start) / 1000;
}

export function count(output: string, pattern: RegExp): number {
	return output.split('\n').filter((line) => pattern.test(line)).length;
}

export function median(samples: number[]): number {
	const sorted = [...samples].sort((a, b) => a - b);
	const mid = Math.floor(sorted.length / 2);
	return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fixed = (n: number) => n.toFixed(2);

/** Ends the ControlPersist masters Ansible left in `controlDir`, and removes it. */
export async function stopControlMasters(controlDir: string): Promise<void> {
	const sockets = await readdir(controlDir).catch(() => []);
	await Promise.all(
		sockets.map((socket) =>
			run('ssh', ['-o', `ControlPath=${join(controlDir, socket)}`, '-O', 'exit', 'control-master']).catch(() => {})
		)
	);
	await rm(controlDir, { recursive: true, force: true });
}

/** The first line a command prints about its version, or why it could not be read. */
export async function toolVersion(file: string, args: string[]): Promise<string> {
	try {
		const { stdout, stderr } = await run(file, args);
		return `${stdout}${stderr}`.trim().split('\n')[0]!;
	} catch (error) {
		return `unknown (${(error as Error).message})`;
	}
}

/** The machine and tool versions, as list items for a section. */
export async function machine(): Promise<string[]> {
	const version = toolVersion;
	const ssh2 = JSON.parse(
		await readFile(new URL('../node_modules/ssh2/package.json', import.meta.url).pathname, 'utf8')
	) as { version: string };
	return [
		`- CPUs: ${availableParallelism()} (nproc) × ${cpus()[0]?.model ?? 'unknown'}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM`,
		`- Node ${process.version}, ssh2 ${ssh2.version}`,
		`- ${await version('ssh', ['-V'])} (client and the testbed's sshd)`,
		`- parallel-ssh ${await version('parallel-ssh', ['--version'])}, ${await version('ansible', ['--version'])}`
	];
}

export function replaceSection(existing: string | null, heading: string, section: string): string {
	if (existing === null) {
		return `# Benchmarks\n\nMeasured tables from the scripts in \`bench/\` (how to run them: bench/README.md). Each section names the command that produced it and the machine it ran on. Ratios compare tools measured in the same run on the same testbed hosts: they carry over to other machines better than the seconds do.\n\n${section}`;
	}
	const lines = existing.split('\n');
	const start = lines.indexOf(heading);
	if (start === -1) return `${existing.trimEnd()}\n\n${section}`;
	const after = lines.findIndex((line, i) => i > start && line.startsWith('## '));
	const rest = after === -1 ? '' : `\n${lines.slice(after).join('\n')}`;
	return `${lines.slice(0, start).join('\n')}${start > 0 ? '\n' : ''}${section}${rest}`;
}

/** Writes `section` (which starts with `heading`) into docs/benchmarks.md, replacing only that section. */
export async function writeSection(heading: string, section: string): Promise<string> {
	const existing = await readFile(docsPath, 'utf8').catch(() => null);
	await mkdir(join(docsPath, '..'), { recursive: true });
	// Formatted as `npm run lint` expects, so a fresh run never leaves the repository failing its checks.
	const document = replaceSection(existing, heading, section);
	await writeFile(docsPath, await format(document, { ...(await resolveConfig(docsPath)), filepath: docsPath }));
	return docsPath;
}

/** What the external tools need to reach a testbed: its hosts' addresses, an Ansible inventory, ssh options. */
export interface ToolSetup {
	bed: Testbed;
	dir: string;
	hostsFile: string;
	inventory: string;
	sshOptions: string[];
}

/** Writes the inventories and host list for `bed` into `dir`; ssh checks host keys as every tool here does. */
export async function toolSetup(bed: Testbed, dir: string): Promise<ToolSetup> {
	const { ini } = await writeInventories(bed);
	const hostsFile = join(dir, 'hosts.txt');
	await writeFile(hostsFile, bed.hosts.map((host) => `${host.address}\n`).join(''));
	return {
		bed,
		dir,
		hostsFile,
		inventory: ini,
		sshOptions: [
			'-i',
			bed.clientPrivateKeyPath,
			'-o',
			`UserKnownHostsFile=${bed.knownHostsPath}`,
			'-o',
			'StrictHostKeyChecking=yes',
			'-o',
			'IdentitiesOnly=yes',
			'-o',
			'BatchMode=yes'
		]
	};
}
