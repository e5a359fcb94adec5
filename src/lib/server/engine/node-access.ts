import type { Credential, Node } from '$lib/server/db/schema';
import type { SshTarget } from '$lib/server/ssh/connection';

/**
 * How the engine reaches a node. The fleet domain owns nodes, their credentials and bastions; the engine only
 * needs to turn a task's node into an SSH target, so the fleet hands it this at start (the engine imports no
 * domain: docs/development.md, "Folders and directions").
 */
export interface NodeAccess {
	node(id: string): Promise<Node>;
	/** The node's SSH target, its credential unsealed (`credential` when the caller already read it). */
	target(node: Node, credential?: Credential): Promise<SshTarget>;
}

let access: NodeAccess | undefined;

export function useNodeAccess(a: NodeAccess | undefined): void {
	access = a;
}

export function nodeAccess(): NodeAccess {
	if (!access) throw new Error('The engine has no node access: register the fleet domain before starting it');
	return access;
}
