import type { Credential, Node } from '$lib/server/db/schema';
import { credentialRow } from '$lib/server/keys/credentials';
import { sshTargetWith } from '$lib/server/keys/targets';
import type { SshTarget } from '$lib/server/ssh/connection';

/** How to reach a node with its own credential (`sshTargetWith`). */
export async function sshTargetFor(node: Node, depth = 0, credential?: Credential): Promise<SshTarget> {
	// The engine reads a batch of nodes with their credentials in one query and passes the row along.
	const row = credential?.id === node.credentialId ? credential : await credentialRow(node.credentialId);
	return sshTargetWith(node, row, depth);
}
