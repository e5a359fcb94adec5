import { setTimeout as sleep } from 'node:timers/promises';
import { StepFailed, type StepContext } from '$lib/server/engine';
import { sshTargetFor } from '$lib/server/fleet/targets';
import { connect, type ExecResult, type SshConnection } from '$lib/server/ssh/connection';
import { sh, type ShellCommand } from '$lib/server/ssh/shell';

/*
 * The appliance's side of the A/B flow is its slot helper (appliance/flotilla-slot). A reboot ends the task's
 * own connection, so every command here goes through the connection that is alive: the task's until it
 * closes, then one this module opens again and keeps for the rest of the task.
 */

export type Slot = 'a' | 'b';

export interface SlotReport {
	active: Slot;
	next: Slot;
	good: Slot;
	tries: number;
	boots: number;
	fallback: string;
	skipWindow: boolean;
	verified: Record<Slot, string>;
	/** The last health gate the appliance ran (the console's or its boot-gate unit's), if any. */
	lastGate: { slot: Slot; passed: boolean; failedChecks: string[] } | null;
}

/** Parses `flotilla-slot report`. */
export function parseReport(text: string): SlotReport {
	const facts = new Map<string, string>();
	for (const line of text.split('\n')) {
		const at = line.indexOf('=');
		if (at > 0) facts.set(line.slice(0, at), line.slice(at + 1));
	}
	const slot = (name: string): Slot => {
		const v = facts.get(name);
		if (v !== 'a' && v !== 'b') throw new StepFailed(`the slot helper reported ${name}=${v ?? '(nothing)'}`);
		return v;
	};
	return {
		active: slot('active'),
		next: slot('next'),
		good: slot('good'),
		tries: Number(facts.get('tries') ?? 0),
		boots: Number(facts.get('boots') ?? 0),
		fallback: facts.get('fallback') ?? '',
		skipWindow: facts.get('skip_window') === '1',
		verified: { a: facts.get('verified_a') ?? '', b: facts.get('verified_b') ?? '' },
		lastGate: parseGate(facts.get('last_gate') ?? '')
	};
}

/** `last_gate=<slot> passed` or `<slot> failed <check> ...`; anything else is no gate seen. */
function parseGate(text: string): SlotReport['lastGate'] {
	const [slot, outcome, ...failedChecks] = text.trim().split(/\s+/);
	if ((slot !== 'a' && slot !== 'b') || (outcome !== 'passed' && outcome !== 'failed')) return null;
	return { slot, passed: outcome === 'passed', failedChecks };
}

export const otherSlot = (s: Slot): Slot => (s === 'a' ? 'b' : 'a');

const reopened = new Map<string, SshConnection>();

/** The connection to use now: the task's while it is open, else the one opened again after it closed. */
export async function liveConnection<P>(ctx: StepContext<P>, timeoutMs = 60_000): Promise<SshConnection> {
	if (!ctx.ssh.closed) return ctx.ssh;
	const kept = reopened.get(ctx.task.id);
	if (kept && !kept.closed) return kept;
	const conn = await reconnect(ctx, timeoutMs);
	reopened.set(ctx.task.id, conn);
	return conn;
}

/** Closes what `liveConnection` opened for a task (at the task's end). */
export function releaseConnection(taskId: string): void {
	reopened.get(taskId)?.close();
	reopened.delete(taskId);
}

/** Waits for the node to accept a session again (after a reboot or a dropped connection), up to a deadline. */
export async function reconnect<P>(ctx: StepContext<P>, timeoutMs: number): Promise<SshConnection> {
	const until = performance.now() + timeoutMs;
	const target = await sshTargetFor(ctx.node);
	for (;;) {
		if (ctx.signal.aborted) throw new StepFailed(`stopped while waiting for ${ctx.node.name} to answer`);
		try {
			const conn = await connect(target, { readyTimeoutMs: 5_000 });
			const old = reopened.get(ctx.task.id);
			if (old && old !== conn) old.close();
			reopened.set(ctx.task.id, conn);
			return conn;
		} catch {
			if (performance.now() > until) {
				throw new StepFailed(`${ctx.node.name} did not answer within ${Math.round(timeoutMs / 1000)} s`);
			}
			await new Promise((r) => setTimeout(r, 500));
		}
	}
}

/** Runs a command on the live connection, its output in the task's log; a non-zero exit fails with its last line. */
export async function run<P>(
	ctx: StepContext<P>,
	command: ShellCommand,
	options: { deadlineMs?: number; allowFailure?: boolean } = {}
): Promise<ExecResult> {
	const conn = await liveConnection(ctx);
	const result = await conn.exec(command, {
		deadlineMs: options.deadlineMs ?? 60_000,
		signal: ctx.signal,
		onLine: ({ line }) => ctx.log(line)
	});
	if (result.cancelled) throw new StepFailed('interrupted');
	if (result.timedOut) throw new StepFailed(`${command.script} timed out`);
	if (!options.allowFailure && result.exitCode !== 0) {
		const detail = result.stderr.trim().split('\n').at(-1) || `exit ${result.exitCode ?? result.signal}`;
		throw new StepFailed(detail.replace(/^flotilla-slot: /, ''), result.exitCode);
	}
	return result;
}

/** Reboots the appliance and waits until it answers again: the old session must be gone first. */
export async function rebootAndReconnect<P>(ctx: StepContext<P>, timeoutSeconds: number): Promise<void> {
	const conn = await liveConnection(ctx);
	await run(ctx, sh`reboot`, { allowFailure: true });
	const until = performance.now() + timeoutSeconds * 1000;
	while (!conn.closed) {
		if (performance.now() > until) throw new StepFailed(`${ctx.node.name} did not go down after the reboot command`);
		await sleep(200, undefined, { signal: ctx.signal });
	}
	ctx.log('the appliance went down');
	await reconnect(ctx, Math.max(1_000, until - performance.now()));
	ctx.log('the appliance is back');
}
