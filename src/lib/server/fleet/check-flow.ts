import { eq } from 'drizzle-orm';
import { recordAudit, systemActor, type Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes, type Run } from '$lib/server/db/schema';
import { createRun, type Flow, type TaskEnd } from '$lib/server/engine';
import { conflict } from '$lib/server/errors';
import { sh } from '$lib/server/ssh/shell';
import { checkAuditEntry, recordCheck, type CheckOutcome } from './checks';

/** What a check task learnt as it went, kept in its memo until the task ends. */
interface CheckMemo {
	/** The key of the session the engine opened: set once the node was reached. */
	fingerprint?: string;
	latencyMs?: number;
	uname?: string;
}

/**
 * "Check nodes" as a run: reaches every chosen node over SSH through the engine (so it shows progress, logs
 * and per-node outcomes like any other run). Whatever the outcome, the task's end is recorded on the node row
 * by `recordCheck`, exactly as the single-node check records it: a node that cannot be reached fails the task
 * in the engine before any step runs, so the steps only gather, and `finished` records. Read-only on the nodes,
 * so nothing to undo.
 */
export const checkFlow: Flow = {
	kind: 'check',
	title: 'Check',
	readOnly: true,
	freshSession: true,
	steps: [
		{
			name: 'connect',
			deadlineMs: 15_000,
			retry: { attempts: 2, delayMs: 1_000 },
			async do(ctx) {
				const memo = ctx.memo as CheckMemo;
				memo.fingerprint = ctx.ssh.fingerprint;
				const started = performance.now();
				await ctx.exec(sh`true`);
				memo.latencyMs = Math.round(performance.now() - started);
			}
		},
		{
			name: 'facts',
			deadlineMs: 15_000,
			retry: { attempts: 2, delayMs: 1_000 },
			async do(ctx) {
				(ctx.memo as CheckMemo).uname = (await ctx.exec(sh`uname -a`)).stdout.trim();
			}
		}
	],

	async finished(end) {
		const outcome = outcomeOf(end);
		if (!outcome) return;
		const checked = await recordCheck(end.node, outcome);
		// A changed key is a security event whoever asked for the check: audited as the single-node check does,
		// by the console itself on behalf of the run (whose creation names the operator).
		if (checked.result.host_key_status === 'changed') {
			const entry = checkAuditEntry(checked);
			await recordAudit(systemActor, { ...entry, details: { ...entry.details, run_id: end.task.runId } });
		}
	}
};

function outcomeOf(end: TaskEnd): CheckOutcome | null {
	// A check stopped by a cancel found nothing to record.
	if (end.state === 'cancelled' || end.state === 'skipped') return null;
	const memo = end.memo as CheckMemo;
	if (memo.fingerprint) {
		return {
			connected: true,
			fingerprint: memo.fingerprint,
			latencyMs: memo.latencyMs ?? null,
			uname: memo.uname ?? null,
			error: end.state === 'succeeded' ? null : end.error
		};
	}
	// No session was opened. Only the SSH layer's error says why; without one (the console could not even build
	// the connection, e.g. its credential would not unseal) there is nothing to say about the node.
	return end.connectError ? { connected: false, error: end.connectError } : null;
}

/** A check run on every node whose host key is pinned: the others cannot be connected to safely yet. */
export async function checkAllNodes(actor: Actor): Promise<Run> {
	const pinned = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.hostKeyStatus, 'pinned'));
	if (!pinned.length) {
		throw conflict('No node has a pinned host key yet: test and accept a node in Settings → Nodes first.');
	}
	return createRun(actor, { kind: checkFlow.kind, title: 'Check all nodes', nodeIds: pinned.map((n) => n.id) });
}
