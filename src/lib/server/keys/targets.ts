import { eq } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodes, type Credential, type Node } from '$lib/server/db/schema';
import { notFound, ServiceError } from '$lib/server/errors';
import type { SshTarget } from '$lib/server/ssh/connection';
import { credentialRow, unsealCredentialRow } from './credentials';

/**
 * How to reach a node signed in with `credential`: its address, the key in clear (in memory only) and its
 * bastion chain, each bastion with its own credential. It lives here, below the fleet, because both the fleet
 * (the node's own credential) and the key rotation (a key the node's record does not name yet) need it, and the
 * fleet imports this folder.
 */
export async function sshTargetWith(node: Node, credential: Credential, depth = 0): Promise<SshTarget> {
	if (depth > 3) throw new ServiceError('validation_failed', 'Bastion chains are limited to 3 hops');
	const { privateKey, passphrase } = unsealCredentialRow(credential);
	return {
		host: node.host,
		port: node.port,
		username: node.username,
		privateKey,
		passphrase,
		hostKeyFingerprint: node.hostKeyFingerprint,
		jump: node.jumpNodeId ? await bastionTarget(node.jumpNodeId, depth + 1) : undefined
	};
}

async function bastionTarget(id: string, depth: number): Promise<SshTarget> {
	const [bastion] = await db().select().from(nodes).where(eq(nodes.id, id));
	if (!bastion) throw notFound('Node');
	return sshTargetWith(bastion, await credentialRow(bastion.credentialId), depth);
}
