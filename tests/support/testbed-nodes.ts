import { systemActor } from '../../src/lib/server/audit';
import { db } from '../../src/lib/server/db';
import { nodes, type Node } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import type { Testbed, TestHost } from '../testbed/testbed';

/**
 * Registers every testbed host as a node with its host key pinned, reached with the testbed's client key (one
 * credential named `testbed`). `extra` adds per-host columns (roles, policy, control plane…).
 */
export async function registerTestbedNodes(
	bed: Testbed,
	extra: (host: TestHost, index: number) => Partial<typeof nodes.$inferInsert> = () => ({})
): Promise<Node[]> {
	const cred = await createCredential(systemActor, { name: 'testbed', privateKey: bed.clientPrivateKey });
	return db()
		.insert(nodes)
		.values(
			bed.hosts.map((h, i) => ({
				name: h.name,
				host: h.address,
				port: h.port,
				credentialId: cred.id,
				hostKeyFingerprint: h.hostKeyFingerprint,
				hostKeyStatus: 'pinned' as const,
				...extra(h, i)
			}))
		)
		.returning();
}

/** Runs `script` as root on a testbed host, over the console's own SSH layer. */
export async function sshAsRoot(bed: Testbed, h: TestHost, script: string) {
	const conn = await connect({
		host: h.address,
		port: h.port,
		username: 'root',
		privateKey: bed.clientPrivateKey,
		hostKeyFingerprint: h.hostKeyFingerprint
	});
	try {
		return await conn.exec(sh`sh -c ${script}`);
	} finally {
		conn.close();
	}
}
