import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { certRoleSchema } from '../../src/lib/schemas/certificates';
import { systemActor } from '../../src/lib/server/audit';
import { trustAuthority } from '../../src/lib/server/certs/authority';
import { defineCertRole } from '../../src/lib/server/certs/roles';
import { db } from '../../src/lib/server/db';
import { nodes, type Node } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { connect, type SshTarget } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { hostPaths, type Testbed, type TestHost } from '../testbed/testbed';

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

/**
 * Certificate settings for the testbed's `web` role, as every host serves it (its file and key, the endpoint on
 * the host's TLS port, a reload), `role` changing any of them, and the testbed's CA trusted.
 */
export async function certifyTestbedRole(
	bed: Testbed,
	role: Partial<z.input<typeof certRoleSchema>> = {}
): Promise<void> {
	await defineCertRole(
		systemActor,
		certRoleSchema.parse({
			role: 'web',
			cert_path: hostPaths.tlsCert,
			key_path: hostPaths.tlsKey,
			endpoints: [{ port: bed.hosts[0]!.tlsPort }],
			reload_command: ['systemctl', 'reload', hostPaths.tlsUnit],
			...role
		})
	);
	await trustAuthority(systemActor, { name: 'testbed CA', cert_pem: await readFile(bed.caCertPath, 'utf8') });
}

/**
 * Where the console's SSH layer reaches a testbed host: as root, with the testbed's key, its host key pinned
 * (to `pinned` when given: another key, or none yet).
 */
export function testbedTarget(
	bed: Testbed,
	host: TestHost,
	pinned: string | null = host.hostKeyFingerprint
): SshTarget {
	return {
		host: host.address,
		port: host.port,
		username: host.user,
		privateKey: bed.clientPrivateKey,
		hostKeyFingerprint: pinned
	};
}

/** Runs `script` as root on a testbed host, over the console's own SSH layer. */
export async function sshAsRoot(bed: Testbed, h: TestHost, script: string) {
	const conn = await connect(testbedTarget(bed, h));
	try {
		return await conn.exec(sh`sh -c ${script}`);
	} finally {
		conn.close();
	}
}
