import { systemActor } from '../../src/lib/server/audit';
import { db } from '../../src/lib/server/db';
import { nodes } from '../../src/lib/server/db/schema';
import { createCredential } from '../../src/lib/server/keys/credentials';
import { authorizedKeyOf, newHostKey, startSimulatedHosts, type SimulatedHost } from '../../src/lib/server/sim/server';

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
	const hosts = await startSimulatedHosts({
		count,
		prefix,
		address: '127.0.0.1',
		authorizedKey: authorizedKeyOf(clientKey)
	});
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
