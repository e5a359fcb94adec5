import { StepFailed, type StepContext } from '$lib/server/engine';
import type { ExecResult } from '$lib/server/ssh/connection';
import type { ShellCommand } from '$lib/server/ssh/shell';

/**
 * Runs a command on the node without streaming its output into the task's log: certificates and CSRs would
 * flood it, and the certificate flows say in their own words what they found. The deadline, the kill on
 * cancel and the failure on a non-zero exit are the engine's own (`ctx.exec`).
 */
export async function quietExec(
	ctx: StepContext<unknown>,
	command: ShellCommand,
	opts: { deadlineMs?: number; okExitCodes?: number[] } = {}
): Promise<ExecResult> {
	const deadlineMs = opts.deadlineMs ?? 30_000;
	const result = await ctx.ssh.exec(command, { deadlineMs, signal: ctx.signal });
	if (result.cancelled) throw ctx.signal.reason ?? new StepFailed('cancelled');
	if (result.timedOut) throw new StepFailed(`timed out after ${Math.round(deadlineMs / 1000)} s`, result.exitCode);
	if (result.exitCode === null || !(opts.okExitCodes ?? [0]).includes(result.exitCode)) {
		const detail = result.stderr.trim().split('\n').at(-1) || result.signal || '';
		throw new StepFailed(
			`exited with ${result.exitCode ?? result.signal}${detail ? `: ${detail}` : ''}`,
			result.exitCode
		);
	}
	return result;
}
