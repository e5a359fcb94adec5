/**
 * `npm run testbed -- --hosts 20 [--first-host 10]`: starts a fleet of real OpenSSH test hosts, writes
 * inventories for the console and for Ansible, and keeps the fleet up until SIGINT or SIGTERM, then tears
 * it all down.
 */
import { parseArgs } from 'node:util';
import { writeInventories } from './inventory.ts';
import { startTestbed } from './testbed.ts';

const { values } = parseArgs({
	options: {
		hosts: { type: 'string', default: '3' },
		'first-host': { type: 'string', default: '10' }
	}
});
const hosts = Number(values.hosts);
const firstHost = Number(values['first-host']);
if (process.getuid?.() !== 0) {
	console.error('The testbed needs root: it creates mount and pid namespaces for its hosts.');
	process.exit(1);
}

const started = Date.now();
const testbed = await startTestbed({ hosts, firstHost });
const inventories = await writeInventories(testbed);

console.table(
	testbed.hosts.map((host) => ({
		name: host.name,
		address: host.address,
		fingerprint: host.hostKeyFingerprint,
		tls: `${host.address}:${host.tlsPort}`
	}))
);
console.log(`${testbed.hosts.length} hosts up in ${Date.now() - started} ms, as root with ${testbed.clientPrivateKeyPath}
  console inventory  ${inventories.json}
  Ansible inventory  ${inventories.ini}
  known_hosts        ${inventories.knownHosts}
  testbed CA         ${testbed.caCertPath}
${testbed.roles.map((role) => `  origin ${role.padEnd(11)} ${testbed.origins[role]} (checked out at /opt/${role} on every host)`).join('\n')}
  try                ssh -i ${testbed.clientPrivateKeyPath} -o UserKnownHostsFile=${inventories.knownHosts} root@${testbed.hosts[0]?.address} 'systemctl restart web; systemctl is-active web'
Ctrl-C (SIGINT) or SIGTERM stops the fleet.`);

const parent = process.ppid;
let stopping = false;
async function stopFleet(reason: string): Promise<void> {
	if (stopping) return;
	stopping = true;
	console.log(`${reason}: stopping the fleet`);
	clearInterval(watch);
	await testbed.stop();
	console.log(`stopped; ${testbed.dir} removed`);
	process.exit(0);
}
// `npm run` forwards SIGTERM only to the shell it runs this in, which dies of it and leaves this process
// to an adoptive parent. Noticing that keeps a `kill <npm pid>` from leaving the fleet running. The timer
// also keeps this process waiting: the hosts run in process groups of their own.
const watch = setInterval(() => {
	if (process.ppid !== parent) void stopFleet('parent process gone');
}, 500);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
	process.once(signal, () => void stopFleet(signal));
}
