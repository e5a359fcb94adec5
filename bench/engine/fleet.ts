// The simulated fleet in a process of its own, so that the console's CPU time and peak RSS are the console's.
// Usage: node --import ./tests/support/ts-hooks.mjs bench/engine/fleet.ts
// Env: FLEET_SIZE, FLEET_ADDRESS, FLEET_FILE (where it writes the hosts and the client key as JSON).
// Prints `ready` once every host listens; stops on SIGTERM.
import { writeFileSync } from 'node:fs';
import { authorizedKeyOf, newHostKey, startSimulatedHosts } from '../../src/lib/server/sim/server.ts';

const size = Number(process.env.FLEET_SIZE);
const address = process.env.FLEET_ADDRESS!;
const clientKey = newHostKey();
const hosts = await startSimulatedHosts({
	count: size,
	prefix: 'bench',
	address,
	authorizedKey: authorizedKeyOf(clientKey)
});
writeFileSync(
	process.env.FLEET_FILE!,
	JSON.stringify({
		clientKey,
		hosts: hosts.map((h) => ({ name: h.name, address: h.address, port: h.port, fingerprint: h.hostKeyFingerprint }))
	})
);
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
	await Promise.all(hosts.map((h) => h.stop()));
	process.exit(0);
});
