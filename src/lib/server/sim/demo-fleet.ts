import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { eq } from 'drizzle-orm';
import ssh2 from 'ssh2';
import { systemActor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { credentials, nodes } from '$lib/server/db/schema';
import { checkNode } from '$lib/server/fleet/nodes';
import { createCredential } from '$lib/server/keys/credentials';
import { log, loggableError } from '$lib/server/log';
import { fingerprintOf } from '$lib/server/ssh/host-keys';
import { newHostModel, type HostModel } from './host';
import { newHostKey, startSimulatedHost, type SimulatedHost } from './server';

/**
 * The quick start's demo fleet: 24 simulated nodes on loopback, registered with pinned host keys, in a
 * realistic mix of states (most healthy, some unreachable, one whose host key changed, one never
 * accepted, one failing its health check). Their identities and ports are kept in the data folder so a
 * restart brings back the same fleet. Only the embedded quick start runs it (FLOTILLA_DEMO=1).
 */
interface DemoHostState {
	name: string;
	port: number;
	hostKey: string;
}

interface DemoState {
	clientKey: string;
	hosts: DemoHostState[];
}

const CREDENTIAL = 'demo-fleet';
const ROLES = [['backend'], ['frontend'], ['backend', 'worker'], ['worker']];
const DCS = ['ams', 'fra', 'lon'];

function plan(i: number) {
	const appliance = i >= 20;
	return {
		name: appliance ? `edge-${String(i - 19).padStart(2, '0')}` : `app-${String(i + 1).padStart(2, '0')}`,
		kind: appliance ? ('appliance' as const) : ('server' as const),
		roles: appliance ? ['gateway'] : ROLES[i % ROLES.length]!,
		labels: { env: i % 5 === 4 ? 'staging' : 'prod', dc: DCS[i % DCS.length]! },
		controlPlane: i < 2,
		policy: i % 7 === 3 ? ('manual' as const) : i % 3 === 0 ? ('full' as const) : ('security' as const)
	};
}

function modelFor(name: string, i: number): HostModel {
	const model = newHostModel(name);
	model.units.set('app.service', 'active');
	model.repos.set('/opt/app', (0x5eed00 + i).toString(16).padEnd(40, 'a'));
	if (i % 3 === 0) {
		model.upgradable = ['openssl/stable-security 3.0.15-1~deb12u1 amd64 [upgradable from: 3.0.14-1~deb12u2]'];
	}
	if (name === 'app-07') model.faults.failHealth = true;
	return model;
}

// Which demo hosts misbehave, by name.
const UNREACHABLE = new Set(['app-11', 'edge-03']);
const KEY_CHANGED = 'app-15';
const NEVER_ACCEPTED = 'app-19';

function loadState(file: string): DemoState {
	if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as DemoState;
	return {
		clientKey: newHostKey(),
		hosts: Array.from({ length: 24 }, (_, i) => ({ name: plan(i).name, port: 0, hostKey: newHostKey() }))
	};
}

function publicKeyOf(privateKey: string): string {
	const parsed = ssh2.utils.parseKey(privateKey);
	if (parsed instanceof Error) throw parsed;
	return `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
}

export interface DemoFleet {
	hosts: SimulatedHost[];
	/** Settles when the first check of every demo node is done. */
	checked: Promise<void>;
	stop(): Promise<void>;
}

export async function startDemoFleet(dataDir: string): Promise<DemoFleet> {
	const file = path.join(dataDir, 'demo-fleet.json');
	const state = loadState(file);
	const authorizedKey = publicKeyOf(state.clientKey);

	const hosts: SimulatedHost[] = [];
	for (const [i, h] of state.hosts.entries()) {
		const start = (port: number) =>
			startSimulatedHost({ name: h.name, port, hostKey: h.hostKey, authorizedKey, model: modelFor(h.name, i) });
		// Keep last run's port when it is free, so registered nodes stay valid.
		const host = await start(h.port).catch(() => start(0));
		h.port = host.port;
		if (UNREACHABLE.has(h.name)) await host.setRefusing(true);
		hosts.push(host);
	}
	writeFileSync(file, JSON.stringify(state), { mode: 0o600 });

	let [cred] = await db().select({ id: credentials.id }).from(credentials).where(eq(credentials.name, CREDENTIAL));
	cred ??= await createCredential(systemActor, { name: CREDENTIAL, privateKey: state.clientKey });

	for (const [i, host] of hosts.entries()) {
		const p = plan(i);
		const pinned =
			host.name === NEVER_ACCEPTED
				? null
				: host.name === KEY_CHANGED
					? // Pinned to a key the host no longer has, as after a reinstall nobody announced.
						fingerprintOfNewKey()
					: host.hostKeyFingerprint;
		const [existing] = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.name, host.name));
		if (existing) {
			await db().update(nodes).set({ host: host.address, port: host.port }).where(eq(nodes.id, existing.id));
			continue;
		}
		await db()
			.insert(nodes)
			.values({
				name: host.name,
				host: host.address,
				port: host.port,
				username: 'root',
				credentialId: cred.id,
				kind: p.kind,
				roles: p.roles,
				labels: p.labels,
				policy: p.policy,
				controlPlane: p.controlPlane,
				hostKeyFingerprint: pinned,
				hostKeyStatus: pinned ? 'pinned' : 'unknown'
			});
	}

	// A first check of every demo node in the background, so the console opens on a fleet with states.
	const checked = (async () => {
		const all = await db().select({ id: nodes.id }).from(nodes).where(eq(nodes.credentialId, cred.id));
		for (let i = 0; i < all.length; i += 8) {
			await Promise.all(all.slice(i, i + 8).map((n) => checkNode(n.id).catch(() => undefined)));
		}
		log.info({ nodes: all.length }, 'demo fleet checked');
	})().catch((err: unknown) => log.warn({ err: loggableError(err) }, 'demo fleet check failed'));
	log.info({ hosts: hosts.length }, 'demo fleet of simulated nodes started');
	return { hosts, checked, stop: async () => void (await Promise.all(hosts.map((h) => h.stop()))) };
}

function fingerprintOfNewKey(): string {
	const parsed = ssh2.utils.parseKey(newHostKey());
	if (parsed instanceof Error) throw parsed;
	return fingerprintOf(parsed.getPublicSSH());
}
