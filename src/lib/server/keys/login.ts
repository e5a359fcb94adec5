import type { Node } from '$lib/server/db/schema';
import { connect, type SshConnection } from '$lib/server/ssh/connection';
import { SshError } from '$lib/server/ssh/errors';
import { sh } from '$lib/server/ssh/shell';
import { credentialRow } from './credentials';
import { sshTargetWith } from './targets';

/* Logins of the key rotation's own, with a key the node's record does not name yet (the safety net, the new primary). */

/** A session to the node signed in with `credentialId` (not necessarily the node's own credential). */
export async function connectWith(node: Node, credentialId: string): Promise<SshConnection> {
	return connect(await sshTargetWith(node, await credentialRow(credentialId)), { readyTimeoutMs: 15_000 });
}

/**
 * Proves that the node lets `credentialId` in: a fresh session runs `true`. Resolves with null when it does,
 * with the reason when it does not.
 */
export async function tryLogin(node: Node, credentialId: string): Promise<string | null> {
	let conn: SshConnection | undefined;
	try {
		conn = await connectWith(node, credentialId);
		const r = await conn.exec(sh`true`, { deadlineMs: 15_000 });
		return r.exitCode === 0 ? null : `the login ran, but \`true\` exited with ${r.exitCode ?? r.signal}`;
	} catch (err) {
		return err instanceof SshError ? `${err.failure}: ${err.message}` : (err as Error).message;
	} finally {
		conn?.close();
	}
}
