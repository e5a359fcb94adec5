// The simulated fleet in a process of its own, so that the console's CPU time and peak RSS are the console's.
// Usage: node --import ./tests/support/ts-hooks.mjs bench/engine/fleet.ts
// Env: FLEET_SIZE, FLEET_ADDRESS, FLEET_FILE (where it writes the hosts and the client key as JSON).
// Prints `ready` once every host listens; stops on SIGTERM.
import { writeFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { newHostKey, startSimulatedHost, type SimulatedHost } from '../../src/lib/server/sim/server.ts';

const size = Number(process.env.FLEET_SIZE);
const address = process.env.FLEET_ADDRESS!;
const clientKey = newHostKey();
const parsed = ssh2.utils.parseKey(clientKey);
if (parsed instanceof Error) throw parsed;
const authorizedKey = `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
// One host key for the whole fleet, as tests/support/sim-fleet.ts does: thousands of keys cost seconds, prove nothing.
const hostKey = newHostKey();
const hosts: SimulatedHost[] = [];
for (let i = 0; i < size; i += 100) {
	const batch = Array.from({ length: Math.min(100, size - i) }, (_, j) =>
		startSimulatedHost({ name: `bench-${String(i + j + 1).padStart(4, '0')}`, address, authorizedKey, hostKey })
	);
	hosts.push(...(await Promise.all(batch)));
}
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
