import type { Credential, Node } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { unsealCredential, unsealCredentialRow } from '$lib/server/keys/credentials';
import type { SshTarget } from '$lib/server/ssh/connection';
import { getNode } from './nodes';

/** How to reach a node: its address, its credential in clear (in memory only) and its bastion chain. */
export async function sshTargetFor(node: Node, depth = 0, credential?: Credential): Promise<SshTarget> {
	if (depth > 3) throw new ServiceError('validation_failed', 'Bastion chains are limited to 3 hops');
	// The engine reads a batch of nodes with their credentials in one query and passes the row along.
	const { privateKey, passphrase } =
		credential?.id === node.credentialId ? unsealCredentialRow(credential) : await unsealCredential(node.credentialId);
	return {
		host: node.host,
		port: node.port,
		username: node.username,
		privateKey,
		passphrase,
		hostKeyFingerprint: node.hostKeyFingerprint,
		jump: node.jumpNodeId ? await sshTargetFor(await getNode(node.jumpNodeId), depth + 1) : undefined
	};
}
