import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import path from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { and, eq, inArray, isNull } from 'drizzle-orm';
import ssh2 from 'ssh2';
import { systemActor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certAuthorities, certRoles, codeRoles, credentials, nodes, releases, rollouts } from '$lib/server/db/schema';
import { declareImage, getImage, imageOfRelease, receiveChunk } from '$lib/server/appliances/images';
import { certRoleSchema } from '$lib/schemas/certificates';
import { createRoleSchema } from '$lib/schemas/code-sync';
import { trustAuthority } from '$lib/server/certs/authority';
import { defineCertRole } from '$lib/server/certs/roles';
import { notifyCommit } from '$lib/server/codesync/notify';
import { createRole } from '$lib/server/codesync/roles';
import { checkNode } from '$lib/server/fleet/checks';
import { startScan } from '$lib/server/sysupdates/runs';
import { createRolloutSchema } from '$lib/schemas/releases';
import { trustReleaseKey } from '$lib/server/releases/keys';
import { createRelease } from '$lib/server/releases/releases';
import { ed25519Signature } from '$lib/server/releases/signing';
import { createRollout } from '$lib/server/rollouts/rollouts';
import { createCredential } from '$lib/server/keys/credentials';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { log, loggableError } from '$lib/server/log';
import { fingerprintOf } from '$lib/server/ssh/host-keys';
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from 'node:crypto';
import { issueSimCertificate, newCertificateAuthority, type SimCertificateAuthority } from './certificates';
import { cloneOrigin, newOrigin, type SimOrigin } from './git';
import { defineDemoProvisionedRole, demoProvisionedOrigin, offerProvisionedRole } from './demo-provisioning';
import type { SimPackage } from './apt';
import { newHostModel, requireReboot, type HostModel } from './host';
import { nodePaths } from './paths';
import { installSlots } from './slots';
import { authorizedKeysPath } from './authorized-keys';
import { authorizedKeyOf, newHostKey, startSimulatedHost, type SimulatedHost } from './server';

/**
 * The quick start's demo fleet: 24 simulated nodes on loopback, registered with pinned host keys, in a
 * realistic mix of states (most healthy, some unreachable, one whose host key changed, one never
 * accepted, one failing its health check; some a commit behind their role's latest, some waiting for a
 * reboot, some with certificates about to expire or expired, appliances on slot a or b), and a role ready
 * to provision on any of its servers (./demo-provisioning.ts). Their identities and ports are kept in the
 * data folder so a restart brings back the same fleet. Only the embedded quick start runs it (FLOTILLA_DEMO=1).
 */
interface DemoHostState {
	name: string;
	port: number;
	hostKey: string;
	/** The host's authorized_keys as a key rotation left it; absent until one wrote it. */
	authorizedKeys?: string;
}

interface DemoState {
	clientKey: string;
	hosts: DemoHostState[];
	/** The Ed25519 key (PKCS#8 PEM) the demo signs its demo release with; absent in older state files. */
	releaseKey?: string;
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

/** Each role's origin: four commits with stable shas, so a restart shows the same versions. */
function demoOrigins(): Map<string, SimOrigin> {
	const roles = [...new Set([...ROLES.flat(), 'gateway'])];
	return new Map(
		roles.map((role) => [
			role,
			newOrigin(
				role,
				[1, 2, 3, 4].map((n) => ({ sha: createHash('sha1').update(`demo ${role} ${n}`).digest('hex') }))
			)
		])
	);
}

const DAY = 86_400_000;

/** Days until each demo node's certificate expires: most are fine, a few need rotating soon, one has expired. */
function certificateDaysLeft(i: number): number {
	if (i === 5) return -3;
	if (i % 8 === 2) return 9 + i;
	return 45 + ((i * 7) % 40);
}

/** What a Debian 12 host of the demo has installed, and which of it the archive offers newer. */
const DEMO_PACKAGES: (SimPackage & { every: number })[] = [
	{
		name: 'openssl',
		arch: 'amd64',
		installed: '3.0.14-1~deb12u2',
		candidate: '3.0.15-1~deb12u1',
		suites: ['bookworm-security'],
		every: 3
	},
	{
		name: 'libssl3',
		arch: 'amd64',
		installed: '3.0.14-1~deb12u2',
		candidate: '3.0.15-1~deb12u1',
		suites: ['bookworm-security'],
		every: 3
	},
	{
		name: 'libc6',
		arch: 'amd64',
		installed: '2.36-9+deb12u8',
		candidate: '2.36-9+deb12u9',
		suites: ['bookworm-security', 'bookworm'],
		every: 4
	},
	{
		name: 'linux-image-amd64',
		arch: 'amd64',
		installed: '6.1.112-1',
		candidate: '6.1.119-1',
		suites: ['bookworm-security'],
		every: 5
	},
	{
		name: 'tzdata',
		arch: 'all',
		installed: '2024a-0+deb12u1',
		candidate: '2024b-0+deb12u1',
		suites: ['bookworm-updates'],
		every: 2
	},
	{
		name: 'base-files',
		arch: 'amd64',
		installed: '12.4+deb12u7',
		candidate: '12.4+deb12u8',
		suites: ['bookworm'],
		every: 2
	},
	{
		name: 'curl',
		arch: 'amd64',
		installed: '7.88.1-10+deb12u7',
		candidate: '7.88.1-10+deb12u8',
		suites: ['bookworm'],
		every: 3
	},
	{
		name: 'postgresql-15',
		arch: 'amd64',
		installed: '15.8-0+deb12u1',
		candidate: '15.10-0+deb12u1',
		suites: ['bookworm'],
		every: 5
	},
	{
		name: 'nginx',
		arch: 'amd64',
		installed: '1.22.1-9',
		candidate: '1.22.1-9+deb12u1',
		suites: ['bookworm-security'],
		every: 7
	}
];

function demoPackages(i: number): SimPackage[] {
	return DEMO_PACKAGES.map(({ every, ...p }) => ({
		...p,
		suites: [...p.suites],
		// Up to date unless this node is one of the package's every-nth.
		installed: i % every === every - 1 ? p.installed : p.candidate
	}));
}

/** How fast the demo's appliances take an image over SFTP: slow enough to watch the upload progress. */
const APPLIANCE_LINK_BYTES_PER_SECOND = 1.5 * 1024 * 1024;

function modelFor(
	name: string,
	i: number,
	origins: Map<string, SimOrigin>,
	ca: SimCertificateAuthority,
	releaseKeyPem: string
): HostModel {
	const p = plan(i);
	const model = newHostModel(name);
	model.units.set('app.service', 'active');
	model.units.set(nodePaths.tlsUnit, 'active');
	for (const role of p.roles) {
		const origin = origins.get(role)!;
		// Every fourth node is a commit behind its role's latest: outdated until the next Code Sync.
		model.repos.set(nodePaths.repo(role), cloneOrigin(origin, i % 4 === 1 ? 3 : 4));
	}
	model.apt.packages = demoPackages(i);
	if (i % 6 === 2) {
		requireReboot(model, ['linux-image-6.1.0-29-amd64']);
		model.apt.restartServices = new Set(['cron.service', 'ssh.service']);
	}
	if (i % 5 === 4) model.apt.held.add('postgresql-15');
	if (i % 7 === 6) model.apt.needrestart = false;
	const notAfter = new Date(Date.now() + certificateDaysLeft(i) * DAY);
	const cert = issueSimCertificate(ca, {
		commonName: name,
		altNames: [name, `${name}.demo.flotilla.invalid`, '127.0.0.1'],
		notBefore: new Date(notAfter.getTime() - 90 * DAY),
		notAfter
	});
	model.files.set(nodePaths.tlsCert, cert.cert);
	model.files.set(nodePaths.tlsKey, cert.key);
	model.files.set(nodePaths.tlsCa, ca.cert);
	if (p.kind === 'appliance') {
		// The appliance trusts the demo's release key from its installation on, as a real one is installed.
		const publicPem = createPublicKey(createPrivateKey(releaseKeyPem)).export({ format: 'pem', type: 'spki' });
		installSlots(
			model,
			{ a: 'flotilla appliance image 7\n', b: 'flotilla appliance image 6\n' },
			{ releaseKeys: [publicPem.toString()] }
		);
		model.linkBytesPerSecond = APPLIANCE_LINK_BYTES_PER_SECOND;
		// Half the appliances run from slot b, committed there by an earlier A/B update.
		if (i % 2 === 1) {
			for (const fact of ['active', 'next', 'good']) model.files.set(`${nodePaths.slotDir}/${fact}`, 'b\n');
			model.files.set(`${nodePaths.slotDir}/slot-b.img`, 'flotilla appliance image 8\n');
		}
	}
	if (name === 'app-07') model.faults.failHealth = true;
	return model;
}

// Which demo hosts misbehave, by name.
const UNREACHABLE = new Set(['app-11', 'edge-03']);
const KEY_CHANGED = 'app-15';
const NEVER_ACCEPTED = 'app-19';

/**
 * One demo node also carries an `ingress` role whose TLS endpoint still serves the certificate its file held
 * before the last renewal: a rotation that was never reloaded, which a certificate scan flags as a mismatch.
 * Its reload makes the endpoint serve the file again, as on a real node. (A role's endpoint port is the same on
 * each of its nodes, and the demo's nodes share one address: hence a role of its own for this one node.)
 */
const INGRESS = {
	node: 'app-10',
	role: 'ingress',
	unit: 'ingress-tls',
	cert: '/etc/flotilla/tls/ingress.crt',
	key: '/etc/flotilla/tls/ingress.key'
} as const;

/** The demo's private keys are sealed at rest like every other credential (docs/development.md). */
const STATE_CONTEXT = 'demo-fleet';

function loadState(file: string): DemoState {
	if (existsSync(file)) {
		const text = readFileSync(file, 'utf8');
		try {
			// A file from before the keys were sealed is plain JSON; it is sealed when written back.
			return JSON.parse(text.startsWith('{') ? text : openSecret(masterKey(), text, STATE_CONTEXT)) as DemoState;
		} catch (err) {
			log.warn({ err: loggableError(err), file }, 'demo fleet state unreadable (another master key?): new identities');
		}
	}
	return {
		clientKey: newHostKey(),
		hosts: Array.from({ length: 24 }, (_, i) => ({ name: plan(i).name, port: 0, hostKey: newHostKey() }))
	};
}

export interface DemoFleet {
	hosts: SimulatedHost[];
	/** Each role's origin; pushing a commit onto one makes the fleet's nodes of that role outdated. */
	origins: Map<string, SimOrigin>;
	/** Settles when the first check of every demo node is done. */
	checked: Promise<void>;
	stop(): Promise<void>;
}

export async function startDemoFleet(dataDir: string): Promise<DemoFleet> {
	const file = path.join(dataDir, 'demo-fleet.json');
	const state = loadState(file);
	const authorizedKey = authorizedKeyOf(state.clientKey);

	state.releaseKey ??= generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
	const origins = demoOrigins();
	const provisioned = demoProvisionedOrigin();
	const ca = newCertificateAuthority('Flotilla demo CA');
	const hosts: SimulatedHost[] = [];
	const save = () =>
		writeFileSync(file, sealSecret(masterKey(), JSON.stringify(state), STATE_CONTEXT), { mode: 0o600 });
	for (const [i, h] of state.hosts.entries()) {
		const model = modelFor(h.name, i, origins, ca, state.releaseKey);
		if (plan(i).kind === 'server') offerProvisionedRole(model, provisioned);
		// Who may log in survives a restart, as on a real host: a rotated key stays rotated.
		if (h.authorizedKeys !== undefined) model.files.set(authorizedKeysPath, h.authorizedKeys);
		model.persist = () => {
			h.authorizedKeys = model.files.get(authorizedKeysPath);
			save();
		};
		const start = (port: number) =>
			startSimulatedHost({ name: h.name, port, hostKey: h.hostKey, authorizedKey, model });
		// Keep last run's port when it is free, so registered nodes stay valid.
		const host = await start(h.port).catch(() => start(0));
		h.port = host.port;
		if (UNREACHABLE.has(h.name)) await host.setRefusing(true);
		hosts.push(host);
	}
	save();
	const ingressHost = hosts.find((h) => h.name === INGRESS.node)!;
	const ingress = await startDemoIngress(ingressHost.model, ingressHost.address, ca);

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
				roles: host.name === INGRESS.node ? [...p.roles, INGRESS.role] : p.roles,
				labels: p.labels,
				policy: p.policy,
				controlPlane: p.controlPlane,
				hostKeyFingerprint: pinned,
				hostKeyStatus: pinned ? 'pinned' : 'unknown'
			});
	}

	await defineDemoRoles(origins);
	await defineDemoProvisionedRole(provisioned, (origins.size + 1) * 10);
	await defineDemoCertificates(origins, ca, ingress.port);
	await defineDemoRelease(origins, state.releaseKey);
	await defineDemoApplianceRelease(state.releaseKey);

	// A first check of every demo node in the background, so the console opens on a fleet with states.
	const checked = (async () => {
		// By name: after a key rotation the demo's nodes use the rotated credential, not the one made here.
		const demoNodes = inArray(
			nodes.name,
			hosts.map((h) => h.name)
		);
		const all = await db().select({ id: nodes.id }).from(nodes).where(demoNodes);
		for (let i = 0; i < all.length; i += 8) {
			await Promise.all(all.slice(i, i + 8).map((n) => checkNode(n.id).catch(() => undefined)));
		}
		log.info({ nodes: all.length }, 'demo fleet checked');
		// And a first scan for system updates, so the System Updates page opens on real packages (the pinned
		// nodes: the others cannot be reached until an admin accepts their keys).
		const pinnedIds = await db()
			.select({ id: nodes.id })
			.from(nodes)
			.where(and(demoNodes, eq(nodes.hostKeyStatus, 'pinned')));
		if (pinnedIds.length) await startScan(systemActor, { nodes: pinnedIds.map((n) => n.id), refresh: true });
	})().catch((err: unknown) => log.warn({ err: loggableError(err) }, 'demo fleet check failed'));
	log.info({ hosts: hosts.length }, 'demo fleet of simulated nodes started');
	return {
		hosts,
		origins,
		checked,
		stop: async () => void (await Promise.all([...hosts.map((h) => h.stop()), ingress.stop()]))
	};
}

/**
 * The demo's roles, deployed by git like a real fleet's, and each role's latest commit as a post-commit hook
 * would have announced it. The health sweep (which runs at start-up) then records what every node really
 * runs: the nodes a commit behind show as OUTDATED. Both steps are idempotent across restarts.
 */
async function defineDemoRoles(origins: Map<string, SimOrigin>): Promise<void> {
	for (const [order, [role, origin]] of [...origins.entries()].entries()) {
		const [known] = await db().select({ name: codeRoles.name }).from(codeRoles).where(eq(codeRoles.name, role));
		if (!known) {
			await createRole(
				systemActor,
				createRoleSchema.parse({
					name: role,
					description: `The demo fleet's ${role} app`,
					path: nodePaths.repo(role),
					units: ['app.service'],
					install_command: ['sh', 'install.sh'],
					order: (order + 1) * 10
				})
			);
		}
		const latest = origin.commits.at(-1)!;
		await notifyCommit(systemActor, {
			commit: latest.sha,
			changed_roles: [role],
			branch: 'main',
			message: `${role} ${origin.commits.length}`,
			author: 'Flotilla demo'
		});
	}
}

function fingerprintOfNewKey(): string {
	const parsed = ssh2.utils.parseKey(newHostKey());
	if (parsed instanceof Error) throw parsed;
	return fingerprintOf(parsed.getPublicSSH());
}

/**
 * Where the demo's roles keep their certificate (read over SSH by a scan), and the demo CA as trusted. The CA is
 * made anew at each start, so the trusted one is replaced; role settings an admin changed are kept.
 */
async function defineDemoCertificates(
	origins: Map<string, SimOrigin>,
	ca: SimCertificateAuthority,
	ingressPort: number
): Promise<void> {
	for (const [order, role] of [...origins.keys()].entries()) {
		const [known] = await db().select({ role: certRoles.role }).from(certRoles).where(eq(certRoles.role, role));
		if (known) continue;
		await defineCertRole(
			systemActor,
			certRoleSchema.parse({
				role,
				cert_path: nodePaths.tlsCert,
				key_path: nodePaths.tlsKey,
				reload_command: ['systemctl', 'reload', nodePaths.tlsUnit],
				order: (order + 1) * 10
			})
		);
	}
	// The ingress endpoint listens on a new port at each start: its role always says which.
	await defineCertRole(
		systemActor,
		certRoleSchema.parse({
			role: INGRESS.role,
			cert_path: INGRESS.cert,
			key_path: INGRESS.key,
			endpoints: [{ port: ingressPort }],
			reload_command: ['systemctl', 'reload', INGRESS.unit],
			order: (origins.size + 1) * 10
		})
	);
	await db()
		.delete(certAuthorities)
		.where(and(eq(certAuthorities.name, ca.name), isNull(certAuthorities.sealedKey)));
	await trustAuthority(systemActor, { name: ca.name, cert_pem: ca.cert });
}

/**
 * The ingress role's endpoint on `model`'s node: it serves a certificate renewed 50 days ago (40 days left) while
 * the file already holds its successor (89 days left); `systemctl reload ingress-tls` serves the file.
 */
async function startDemoIngress(
	model: HostModel,
	address: string,
	ca: SimCertificateAuthority
): Promise<{ port: number; stop(): Promise<void> }> {
	const now = Date.now();
	const issue = (daysAgo: number) =>
		issueSimCertificate(ca, {
			commonName: `${INGRESS.node}.demo.flotilla.invalid`,
			altNames: [`${INGRESS.node}.demo.flotilla.invalid`, '127.0.0.1'],
			notBefore: new Date(now - daysAgo * DAY),
			notAfter: new Date(now + (90 - daysAgo) * DAY)
		});
	const served = issue(50);
	const renewed = issue(1);
	model.files.set(INGRESS.cert, renewed.cert);
	model.files.set(INGRESS.key, renewed.key);
	model.units.set(INGRESS.unit, 'active');
	const server = createTlsServer({ cert: served.cert, key: served.key }, (socket) => socket.end());
	// A handshake that fails (a client going away) is the client's business, not the demo's.
	server.on('tlsClientError', () => undefined);
	model.onReload = new Map([
		[
			INGRESS.unit,
			() => server.setSecureContext({ cert: model.files.get(INGRESS.cert)!, key: model.files.get(INGRESS.key)! })
		]
	]);
	await new Promise<void>((resolve, reject) => {
		server.once('error', reject);
		server.listen(0, address, () => resolve());
	});
	return {
		port: (server.address() as { port: number }).port,
		stop: () => new Promise<void>((resolve) => server.close(() => resolve()))
	};
}

/** The demo release's version, and the backend nodes its demo rollout went to (reachable and healthy ones). */
const DEMO_RELEASE = '1.4.0';
const DEMO_ROLLOUT_NODES = ['app-01', 'app-03', 'app-05', 'app-09', 'app-13', 'app-17'];

/**
 * A signed release of the backend's latest commit and a staged rollout of it, so the Releases and Rollouts pages
 * open on something real: the demo's own key signs the manifest and the console verifies it like any other
 * (only the demo trusts that key). The rollout is created once; the driver runs it over the simulated nodes,
 * which already run that commit, so it finishes within seconds without changing the fleet's Code Sync states.
 */
async function defineDemoRelease(origins: Map<string, SimOrigin>, pem: string): Promise<void> {
	const key = createPrivateKey(pem);
	trustReleaseKey(createPublicKey(key));
	let [release] = await db().select().from(releases).where(eq(releases.version, DEMO_RELEASE));
	if (!release) {
		const manifest: Record<string, unknown> = {
			version: DEMO_RELEASE,
			sha: origins.get('backend')!.commits.at(-1)!.sha,
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-05-01T12:00:00Z'
		};
		release = await createRelease(systemActor, { ...manifest, signature: ed25519Signature(manifest, key) });
	}
	const [earlier] = await db().select({ id: rollouts.id }).from(rollouts).where(eq(rollouts.releaseId, release.id));
	if (earlier) return;
	await createRollout(
		systemActor,
		createRolloutSchema.parse({
			release_id: release.id,
			strategy: 'staged',
			target: { roles: ['backend'], nodes: DEMO_ROLLOUT_NODES },
			stages: [
				{ percent: 10, bake_seconds: 1 },
				{ percent: 50, bake_seconds: 1 },
				{ percent: 100, bake_seconds: 1 }
			]
		})
	);
}

/** The demo's appliance release: its version, and its image's size and bytes (the same at every start). */
export const DEMO_APPLIANCE_RELEASE = '2.0.0';
const DEMO_IMAGE_BYTES = 6 * 1024 * 1024;

function demoImage(): Buffer {
	const image = Buffer.alloc(DEMO_IMAGE_BYTES);
	for (let at = 0, n = 0; at < image.length; at += 32, n++) {
		createHash('sha256')
			.update(`flotilla demo appliance image ${DEMO_APPLIANCE_RELEASE} ${n}`)
			.digest()
			.copy(image, at);
	}
	return image;
}

/**
 * A signed appliance release with its image uploaded to the console, so the quick start can push it to the
 * demo's appliances (or roll it out) and watch the A/B states and the upload progress. The image is signed with
 * the demo's key, which the simulated appliances trust, so they verify it themselves. Made once; an upload a
 * stop interrupted continues at the next start.
 */
async function defineDemoApplianceRelease(pem: string): Promise<void> {
	const key = createPrivateKey(pem);
	let [release] = await db().select().from(releases).where(eq(releases.version, DEMO_APPLIANCE_RELEASE));
	if (!release) {
		const manifest: Record<string, unknown> = {
			version: DEMO_APPLIANCE_RELEASE,
			sha: createHash('sha1').update(`demo appliance ${DEMO_APPLIANCE_RELEASE}`).digest('hex'),
			channel: 'stable',
			migrations_required: false,
			breaking_changes: null,
			released_at: '2026-05-15T12:00:00Z'
		};
		release = await createRelease(systemActor, { ...manifest, signature: ed25519Signature(manifest, key) });
	}
	const bytes = demoImage();
	const sha256 = createHash('sha256').update(bytes).digest('hex');
	const image =
		(await imageOfRelease(release.id)) ??
		(await declareImage(systemActor, {
			release_id: release.id,
			sha256,
			size: bytes.length,
			signature: sign(null, Buffer.from(sha256), key).toString('hex')
		}));
	if (image.state === 'complete') return;
	const from = (await getImage(image.id)).receivedBytes;
	await receiveChunk(
		systemActor,
		image.id,
		from,
		Readable.toWeb(Readable.from([bytes.subarray(from)])) as ReadableStream<Uint8Array>
	);
}
