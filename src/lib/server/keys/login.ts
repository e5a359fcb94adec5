import { eq } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { credentials, nodes, type Credential, type Node } from '$lib/server/db/schema';
import { connect, type SshConnection, type SshTarget } from '$lib/server/ssh/connection';
import { SshError } from '$lib/server/ssh/errors';
import { sh } from '$lib/server/ssh/shell';
import { unsealCredentialRow } from './credentials';

/*
 * Logins of the key rotation's own, with a key the node's record does not name yet (the safety net, the new
 * primary). The fleet's targets cannot be used here: the fleet imports this folder. Bastions are reached with
 * their own credential, as the fleet reaches them.
 */

async function credentialRow(id: string): Promise<Credential> {
	const [row] = await db().select().from(credentials).where(eq(credentials.id, id));
	if (!row) throw new Error(`Credential ${id} is gone`);
	return row;
}

async function targetFor(node: Node, credential: Credential, depth = 0): Promise<SshTarget> {
	if (depth > 3) throw new Error('Bastion chains are limited to 3 hops');
	const { privateKey, passphrase } = unsealCredentialRow(credential);
	let jump: SshTarget | undefined;
	if (node.jumpNodeId) {
		const [bastion] = await db().select().from(nodes).where(eq(nodes.id, node.jumpNodeId));
		if (bastion) jump = await targetFor(bastion, await credentialRow(bastion.credentialId), depth + 1);
	}
	return {
		host: node.host,
		port: node.port,
		username: node.username,
		privateKey,
		passphrase,
		hostKeyFingerprint: node.hostKeyFingerprint,
		jump
	};
}

/** A session to the node signed in with `credentialId` (not necessarily the node's own credential). */
export async function connectWith(node: Node, credentialId: string): Promise<SshConnection> {
	return connect(await targetFor(node, await credentialRow(credentialId)), { readyTimeoutMs: 15_000 });
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
