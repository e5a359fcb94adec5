import { eq } from 'drizzle-orm';
import { recordAudit, type Actor, type AuditEntry } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { nodes, type Node } from '$lib/server/db/schema';
import { log } from '$lib/server/log';
import type { SshConnection } from '$lib/server/ssh/connection';
import { SshError } from '$lib/server/ssh/errors';
import { sh } from '$lib/server/ssh/shell';
import { keepWarm, openConnection } from '$lib/server/ssh/warm';
import { getNode } from './nodes';
import { sshTargetFor } from './targets';

/** Connection checks of a node, one at a time or as a run (check-flow.ts): one way to record what they found. */

export interface CheckResult {
	reachable: boolean;
	host_key_fingerprint: string | null;
	host_key_status: 'pinned' | 'unknown' | 'changed';
	latency_ms: number | null;
	uname: string | null;
	error: string | null;
}

/**
 * What one check of a node found: a session with its pinned key and what was learnt over it (with `error` when a
 * command of the check failed after that), or the SSH layer's refusal (nothing answered, another key, an unknown
 * key, the credential refused).
 */
export type CheckOutcome =
	| { connected: true; fingerprint: string; latencyMs: number | null; uname: string | null; error?: string | null }
	| { connected: false; error: SshError };

/**
 * Writes what a check found on the node's row: the one place every check of a node records its result, whichever
 * way it was started (`checkNode` here; the engine's `check` flow behind "Check all nodes"), so that both leave
 * the same record. A changed host key marks the node and is logged as an alert; an unknown one waits for an admin.
 */
export async function recordCheck(node: Node, outcome: CheckOutcome): Promise<{ node: Node; result: CheckResult }> {
	const now = new Date();
	let result: CheckResult;
	let patch: Partial<Node>;
	if (outcome.connected) {
		result = {
			reachable: true,
			host_key_fingerprint: outcome.fingerprint,
			host_key_status: 'pinned',
			latency_ms: outcome.latencyMs,
			uname: outcome.uname,
			error: outcome.error ?? null
		};
		patch = {
			reachable: true,
			hostKeyStatus: 'pinned',
			presentedFingerprint: null,
			lastSeenAt: now,
			// A check whose command failed midway keeps what earlier checks learnt rather than erasing it.
			latencyMs: outcome.latencyMs ?? undefined,
			uname: outcome.uname ?? undefined,
			lastError: result.error
		};
	} else {
		const err = outcome.error;
		const keyProblem = err.failure === 'host_key_changed' || err.failure === 'host_key_unknown';
		const status = err.failure === 'host_key_changed' ? 'changed' : keyProblem ? 'unknown' : node.hostKeyStatus;
		result = {
			// A node that presented a key answered: it is reachable, only not trusted.
			reachable: keyProblem || err.failure === 'auth',
			host_key_fingerprint: err.fingerprint ?? node.hostKeyFingerprint,
			host_key_status: status,
			latency_ms: null,
			uname: null,
			error: err.message
		};
		patch = {
			reachable: result.reachable,
			hostKeyStatus: status,
			presentedFingerprint: err.fingerprint ?? node.presentedFingerprint,
			// Not "seen": a node that presented an untrusted key (or refused the key) gave the console no session.
			lastError: err.message
		};
		if (err.failure === 'host_key_changed') {
			log.warn(
				{ node: node.name, pinned: node.hostKeyFingerprint, presented: err.fingerprint },
				'HOST KEY CHANGED: connection refused'
			);
		}
	}
	const [updated] = await db()
		.update(nodes)
		.set({ ...patch, lastCheckAt: now })
		.where(eq(nodes.id, node.id))
		.returning();
	return { node: updated!, result };
}

/**
 * Connects to a node and records what it found: reachable, the key it presented, `uname -a`, and the
 * round-trip time of one command.
 */
export async function checkNode(
	id: string,
	options: {
		/** More to look at while connected (the health sweep's role probes); its failure is not the node's. */
		whileConnected?: (conn: SshConnection, node: Node) => Promise<void>;
		readyTimeoutMs?: number;
	} = {}
): Promise<{ node: Node; result: CheckResult }> {
	const node = await getNode(id);
	let outcome: CheckOutcome;
	try {
		// A handshake of its own (a check proves the node presents its pinned key now), left warm for what follows.
		const conn = await openConnection(
			await sshTargetFor(node),
			{ readyTimeoutMs: options.readyTimeoutMs ?? 10_000 },
			{ fresh: true }
		);
		try {
			const started = performance.now();
			await conn.exec(sh`true`, { deadlineMs: 10_000 });
			const latencyMs = Math.round(performance.now() - started);
			const uname = (await conn.exec(sh`uname -a`, { deadlineMs: 10_000 })).stdout.trim();
			outcome = { connected: true, fingerprint: conn.fingerprint, latencyMs, uname };
			await options.whileConnected?.(conn, node).catch((err: unknown) => {
				log.warn({ node: node.name, err: (err as Error).message }, 'inspecting a node after its check failed');
			});
		} finally {
			keepWarm(conn);
		}
	} catch (err) {
		if (!(err instanceof SshError)) throw err;
		outcome = { connected: false, error: err };
	}
	return recordCheck(node, outcome);
}

/**
 * A check an operator asked for, audited. (Checks the console runs on its own, like the demo fleet's first
 * one and later the health sweep, call `checkNode` and are not.) A changed host key is recorded as denied.
 */
export async function checkNodeFor(actor: Actor, id: string): Promise<{ node: Node; result: CheckResult }> {
	const checked = await checkNode(id);
	await recordAudit(actor, checkAuditEntry(checked));
	return checked;
}

/** The audit row of a check: `node.check`, or `node.host_key_changed` (denied) when the node presented another key. */
export function checkAuditEntry(checked: { node: Node; result: CheckResult }): AuditEntry {
	const changed = checked.result.host_key_status === 'changed';
	return {
		action: changed ? 'node.host_key_changed' : 'node.check',
		targetType: 'node',
		targetId: checked.node.id,
		result: changed ? 'denied' : checked.result.reachable ? 'ok' : 'error',
		details: { name: checked.node.name, ...checked.result }
	};
}
