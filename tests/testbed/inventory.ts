/**
 * Inventories of a running testbed for the tools that drive it: the console's import (JSON) and Ansible
 * (INI), both trusting exactly the host keys in the testbed's known_hosts.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Testbed } from './testbed.ts';

export interface Inventories {
	json: string;
	ini: string;
	knownHosts: string;
}

export async function writeInventories(testbed: Testbed): Promise<Inventories> {
	const json = join(testbed.dir, 'inventory.json');
	const ini = join(testbed.dir, 'inventory.ini');
	const nodes = testbed.hosts.map((host) => ({
		name: host.name,
		host: host.address,
		port: host.port,
		user: host.user,
		host_key_fingerprint: host.hostKeyFingerprint,
		private_key_path: testbed.clientPrivateKeyPath
	}));
	await writeFile(json, `${JSON.stringify(nodes, null, '\t')}\n`);
	await writeFile(
		ini,
		[
			...testbed.hosts.map(
				(host) =>
					`${host.name} ansible_host=${host.address} ansible_port=${host.port} ansible_user=${host.user} ansible_ssh_private_key_file=${testbed.clientPrivateKeyPath}`
			),
			'',
			'[all:vars]',
			`ansible_ssh_common_args='-o UserKnownHostsFile=${testbed.knownHostsPath} -o StrictHostKeyChecking=yes'`,
			''
		].join('\n')
	);
	return { json, ini, knownHosts: testbed.knownHostsPath };
}
