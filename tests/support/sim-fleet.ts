import { systemActor } from '../../src/lib/server/audit';
import { db } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import ssh2 from 'ssh2';
import { newHostKey, startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server';

export interface SimFleet {
	hosts: SimulatedHost[];
	/** Node ids in the same order as `hosts`. */
	nodeIds: string[];
	byName: Map<string, SimulatedHost>;
	stop(): Promise<void>;
}

/**
 * Starts `count` simulated nodes on 127.0.0.1 and registers them in the current database with pinned host
 * keys, as an admin would after accepting them. Rows are inserted directly: thousands of nodes in one go.
 */
export async function startSimFleet(count: number, prefix = 'sim'): Promise<SimFleet> {
	const clientKey = newHostKey();
	const parsed = ssh2.utils.parseKey(clientKey);
	if (parsed instanceof Error) throw parsed;
	const authorizedKey = `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
	// One host key for the whole simulated fleet: generating thousands costs seconds and proves nothing here.
	const hostKey = newHostKey();
	const hosts: SimulatedHost[] = [];
	for (let i = 0; i < count; i += 100) {
		const batch = Array.from({ length: Math.min(100, count - i) }, (_, j) =>
			startSimulatedHost({
				name: `${prefix}-${String(i + j + 1).padStart(4, '0')}`,
				address: '127.0.0.1',
				authorizedKey,
				hostKey
			})
		);
		hosts.push(...(await Promise.all(batch)));
	}
	const cred = await createCredential(systemActor, { name: `${prefix}-key-${Date.now()}`, privateKey: clientKey });
	const nodeIds: string[] = [];
	for (let i = 0; i < hosts.length; i += 500) {
		const rows = await db()
			.insert(nodes)
			.values(
				hosts.slice(i, i + 500).map((h) => ({
					name: h.name,
					host: h.address,
					port: h.port,
					username: 'root',
					credentialId: cred.id,
					hostKeyFingerprint: h.hostKeyFingerprint,
					hostKeyStatus: 'pinned' as const
				}))
			)
			.returning({ id: nodes.id });
		nodeIds.push(...rows.map((r) => r.id));
	}
	return {
		hosts,
		nodeIds,
		byName: new Map(hosts.map((h) => [h.name, h])),
		stop: async () => {
			await Promise.all(hosts.map((h) => h.stop()));
		}
	};
}
