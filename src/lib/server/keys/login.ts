import { setTimeout as sleep } from 'node:timers/promises';
import type { Node } from '$lib/server/db/schema';
import { connect, type SshConnection } from '$lib/server/ssh/connection';
import { SshError, type SshFailure } from '$lib/server/ssh/errors';
import { sh } from '$lib/server/ssh/shell';
import { credentialRow } from './credentials';
import { sshTargetWith } from './targets';

/* Logins of the key rotation's own, with a key the node's record does not name yet (the safety net, the new primary). */

/** A session to the node signed in with `credentialId` (not necessarily the node's own credential). */
export async function connectWith(node: Node, credentialId: string): Promise<SshConnection> {
	return connect(await sshTargetWith(node, await credentialRow(credentialId)), { readyTimeoutMs: 15_000 });
}

/**
 * Failures that say nothing about the key: the node was reached a moment ago by the phase's own session, so a
 * handshake that timed out or a connection that dropped is tried again before the key is judged.
 */
const TRANSIENT: SshFailure[] = ['unreachable', 'timeout', 'disconnected'];
const LOGIN_ATTEMPTS = 3;

async function loginOnce(
	node: Node,
	credentialId: string
): Promise<{ failure: SshFailure | null; reason: string } | null> {
	let conn: SshConnection | undefined;
	try {
		conn = await connectWith(node, credentialId);
		const r = await conn.exec(sh`true`, { deadlineMs: 15_000 });
		return r.exitCode === 0
			? null
			: { failure: null, reason: `the login ran, but \`true\` exited with ${r.exitCode ?? r.signal}` };
	} catch (err) {
		return err instanceof SshError
			? { failure: err.failure, reason: `${err.failure}: ${err.message}` }
			: { failure: null, reason: (err as Error).message };
	} finally {
		conn?.close();
	}
}

/**
 * Proves that the node lets `credentialId` in: a fresh session runs `true`. Resolves with null when it does,
 * with the reason when it does not. A refusal (the key is not accepted) is final at once; a transient failure is
 * tried LOGIN_ATTEMPTS times, `pause(attempt)` apart (a second, then two).
 */
export async function tryLogin(
	node: Node,
	credentialId: string,
	pause: (attempt: number) => Promise<unknown> = (attempt) => sleep(attempt * 1000)
): Promise<string | null> {
	for (let attempt = 1; ; attempt++) {
		const outcome = await loginOnce(node, credentialId);
		if (!outcome) return null;
		if (!outcome.failure || !TRANSIENT.includes(outcome.failure) || attempt === LOGIN_ATTEMPTS) {
			return attempt > 1 ? `${outcome.reason} (after ${attempt} attempts)` : outcome.reason;
		}
		await pause(attempt);
	}
}
