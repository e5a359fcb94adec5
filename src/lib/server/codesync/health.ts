import type { CodeRole } from '$lib/server/db/schema';
import { StepFailed, type StepContext } from '$lib/server/engine';
import type { ExecResult } from '$lib/server/ssh/connection';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';

/** Runs a command on a node; what the engine's step context and the health sweep both provide. */
export type Exec = (command: ShellCommand, options?: { deadlineMs?: number }) => Promise<ExecResult>;

const ALL_EXIT_CODES = Array.from({ length: 256 }, (_, i) => i);

/** A step's exec that reports any exit status instead of failing the step (for probes). */
export function anyExit(ctx: Pick<StepContext<unknown>, 'exec'>): Exec {
	return (command, options) => ctx.exec(command, { ...options, okExitCodes: ALL_EXIT_CODES });
}

/** Where a role's code lives on the node: the checkout, or the `current` release of a push role. */
export function workDir(role: Pick<CodeRole, 'method' | 'path'>): string {
	return role.method === 'push' ? `${role.path}/current` : role.path;
}

/** The commands that say whether a role is healthy on a node; every one must exit 0. */
export function healthCommands(role: CodeRole): ShellCommand[] {
	const health = role.health;
	switch (health.type) {
		case 'units':
			return role.units.map((unit) => sh`systemctl is-active --quiet -- ${unit}`);
		case 'command':
			return [sh`cd -- ${workDir(role)} && ${health.command}`];
		case 'http':
			// Fetched on the node itself: the URL names the service as the node sees it (usually 127.0.0.1).
			// --globoff: brackets and braces in a stored URL are the URL's own, not curl's patterns for many URLs;
			// --proto: nothing but http(s), whatever the URL or a redirect says.
			return [sh`curl -fsS -o /dev/null --max-time 5 --globoff --proto =http,https -- ${health.url}`];
	}
}

/** One health probe: null when healthy, else why not. */
export async function probeHealth(exec: Exec, role: CodeRole): Promise<string | null> {
	for (const command of healthCommands(role)) {
		const r = await exec(command, { deadlineMs: 15_000 });
		if (r.exitCode !== 0) {
			const detail = (r.stderr.trim() || r.stdout.trim()).split('\n').at(-1);
			return `${describeHealth(role)} failed (exit ${r.exitCode ?? r.signal}${detail ? `: ${detail}` : ''})`;
		}
	}
	return null;
}

export function describeHealth(role: CodeRole): string {
	const h = role.health;
	if (h.type === 'units') return `systemctl is-active ${role.units.join(' ')}`;
	if (h.type === 'http') return `GET ${h.url}`;
	return h.command.join(' ');
}

/**
 * Probes until healthy or `timeoutSeconds` have passed (a restarted service takes a moment to come up);
 * throws the last reason when it never became healthy.
 */
export async function waitHealthy(
	exec: Exec,
	role: CodeRole,
	signal: AbortSignal,
	log: (line: string) => void
): Promise<void> {
	const until = performance.now() + role.healthTimeoutSeconds * 1000;
	let attempt = 0;
	for (;;) {
		attempt++;
		const problem = await probeHealth(exec, role);
		if (!problem) {
			log(`${role.name}: healthy (${describeHealth(role)}, attempt ${attempt})`);
			return;
		}
		if (performance.now() + 1_000 > until || signal.aborted) {
			throw new StepFailed(`${role.name} is unhealthy after ${role.healthTimeoutSeconds} s: ${problem}`);
		}
		log(`${role.name}: not healthy yet (${problem}); retrying`);
		await new Promise((r) => setTimeout(r, 1_000));
	}
}
