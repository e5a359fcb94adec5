import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installApplianceSchema } from '../../src/lib/schemas/appliances';
import { applianceFiles, applianceUnits, startApplianceInstall } from '../../src/lib/server/appliances/install';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase } from '../../src/lib/server/db';
import type { Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { ServiceError } from '../../src/lib/server/errors';
import { getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { hostPaths, startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * Installing the appliance's side over SSH (docs/appliances.md, "Installing over SSH") on a real sshd host
 * (127.0.1.175) whose slot helper is an old one: what is installed is read from the host's own files, and the
 * installed helper's watchdog, run on the host, probes the console URL the install wrote.
 */

let bed: Testbed;
let host: TestHost;
let appliance: Node;
let server: Node;
let pg: Awaited<ReturnType<typeof freshPostgres>>;
let consoleServer: Server;
let base = '';

const onHostFile = (path: string) => join(host.root, path);
const ownChecks = `${applianceFiles.healthChecks}: the appliance's own health checks (10-appliance): the default checks are not installed`;
const sum = (t: string | Buffer) => createHash('sha256').update(t).digest('hex');

/** Runs a command on the appliance over SSH, as root, outside the install run. */
async function onHost(script: string): Promise<string> {
	const conn = await connect({
		host: host.address,
		port: host.port,
		username: 'root',
		privateKey: bed.clientPrivateKey,
		hostKeyFingerprint: host.hostKeyFingerprint
	});
	try {
		const r = await conn.exec(sh`sh -c ${script}`);
		return `${r.stdout}${r.stderr}`.trim();
	} finally {
		conn.close();
	}
}

async function install(nodeId = appliance.id) {
	const input = installApplianceSchema.parse({ unreachable_seconds: '600', armed_seconds: '7200' });
	const { runId } = await startApplianceInstall(systemActor, nodeId, input, base);
	await waitForRun(runId, ['succeeded', 'failed'], 120_000);
	const log: string[] = [];
	for await (const line of readRunLog(runId)) log.push(`${line.step}: ${line.text}`);
	return { run: await getRun(runId), log };
}

beforeAll(async () => {
	pg = await freshPostgres('flotilla_appliance_install');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	bed = await startTestbed({ hosts: 2, firstHost: 175 });
	host = bed.hosts[0]!;
	const registered = await registerTestbedNodes(bed, (_h, i) => ({ kind: i === 0 ? 'appliance' : 'server' }));
	appliance = registered[0]!;
	server = registered[1]!;
	// The console's /healthz, which the installed watchdog probes (the test hosts share this machine's network).
	consoleServer = createServer((req, res) => {
		res.writeHead(req.url === '/healthz' ? 200 : 404);
		res.end();
	});
	await new Promise<void>((r) => consoleServer.listen(0, '127.0.0.1', r));
	base = `http://127.0.0.1:${(consoleServer.address() as AddressInfo).port}`;
	await startEngine({ concurrency: 4, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	consoleServer?.close();
	await bed?.stop();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
});

describe('installing the appliance side over SSH', () => {
	it('installs the slot helper, its boot, gate and watchdog units and the watchdog settings; a second run changes nothing', async () => {
		// An appliance with an older helper than the console's.
		await writeFile(onHostFile('opt/flotilla/bin/flotilla-slot'), '#!/bin/sh\necho old helper\n', { mode: 0o755 });
		const { run: first, log } = await install();
		expect(first.state).toBe('succeeded');
		expect(applianceFiles.helper).toBe(hostPaths.slotHelper);
		expect(first.tasks[0]!.steps.map((s) => s.name)).toEqual(['files', 'units', 'check']);
		const units = [
			'flotilla-slot-boot.service',
			'flotilla-slot-gate.service',
			'flotilla-slot-watchdog.service',
			'flotilla-slot-watchdog.timer'
		];
		expect(log).toEqual(
			expect.arrayContaining([
				`files: ${applianceFiles.helper}: installed`,
				`files: ${applianceFiles.watchdogConf}: installed`,
				...units.map((u) => `files: ${applianceFiles.units}/${u}: installed`),
				// The testbed's appliance has a health check of its own: the default ones are not installed.
				`files: ${ownChecks}`,
				`units: enabled ${applianceUnits.join(', ')}; the watchdog's timer is running`,
				'check: slot a is booted, slot a is committed',
				'check: 1 health check(s) in /etc/flotilla/health.d',
				'check: no release key in /etc/flotilla/release-keys: the appliance refuses every image until one is installed with it',
				'check: no minimum version (/etc/flotilla/min-version)'
			])
		);

		// On the host: the helper as the repository has it, the units, the settings with this console's URL.
		const helper = await readFile('appliance/flotilla-slot');
		expect(sum(await readFile(onHostFile('opt/flotilla/bin/flotilla-slot')))).toBe(sum(helper));
		expect(await onHost(`stat -c '%a %U' ${applianceFiles.helper} ${applianceFiles.watchdogConf}`)).toBe(
			'755 root\n644 root'
		);
		expect(await readFile(onHostFile('etc/flotilla/watchdog.conf'), 'utf8')).toBe(
			[
				'# Written by the Flotilla console that installed this appliance (docs/appliances.md, "Installing over SSH").',
				`console_url='${base}/healthz'`,
				'unreachable_seconds=600',
				'armed_seconds=7200',
				''
			].join('\n')
		);
		const unitText = await onHost(`cat ${applianceFiles.units}/flotilla-slot-boot.service`);
		expect(unitText).toMatch(/^ExecStart=\/opt\/flotilla\/bin\/flotilla-slot boot$/m);
		expect(await onHost(`cat ${applianceFiles.units}/flotilla-slot-gate.service`)).toMatch(
			/^ExecStart=\/opt\/flotilla\/bin\/flotilla-slot boot-gate$/m
		);
		// The testbed's systemctl keeps what was enabled and started as files.
		const unitsDir = onHostFile('var/lib/flotilla-testbed/units');
		for (const u of ['flotilla-slot-boot', 'flotilla-slot-gate', 'flotilla-slot-watchdog.timer']) {
			await expect(readFile(join(unitsDir, `${u}.enabled`), 'utf8')).resolves.toBe('');
		}
		expect((await readFile(join(unitsDir, 'flotilla-slot-watchdog.timer'), 'utf8')).trim()).toBe('active');

		// The installed watchdog reads those settings: armed by an update, it probes this console.
		await writeFile(onHostFile('boot/flotilla/watch'), `${Math.floor(Date.now() / 1000)}\n`);
		expect(await onHost('flotilla-slot watchdog')).toBe('watchdog: console reachable');
		await new Promise<void>((r) => consoleServer.close(() => r()));
		expect(await onHost('flotilla-slot watchdog')).toMatch(
			/^watchdog: console unreachable for \d+s \(reverting at 600s\)$/
		);
		await new Promise<void>((r) => consoleServer.listen(Number(new URL(base).port), '127.0.0.1', r));

		const { run: again, log: second } = await install();
		expect(again.state).toBe('succeeded');
		expect(second.filter((l) => l.startsWith('files: '))).toEqual([
			...[applianceFiles.helper, applianceFiles.watchdogConf, ...units.map((u) => `${applianceFiles.units}/${u}`)].map(
				(p) => `files: ${p}: unchanged`
			),
			`files: ${ownChecks}`
		]);
		expect(await onHost(`ls ${applianceFiles.healthChecks}`)).toBe('10-appliance');
	}, 240_000);

	it('fails, saying what to do, on an appliance whose slot helper has no state yet', async () => {
		const active = onHostFile('boot/flotilla/active');
		await rename(active, `${active}.away`);
		try {
			const { run } = await install();
			expect(run.state).toBe('failed');
			expect(run.tasks[0]!.error).toMatch(/the slot helper has no state on this appliance: run `flotilla-slot init a`/);
		} finally {
			await rename(`${active}.away`, active);
		}
	}, 120_000);

	it('refuses a node that is not an appliance, naming the node', async () => {
		const refused = await startApplianceInstall(
			systemActor,
			server.id,
			installApplianceSchema.parse({ unreachable_seconds: 3600, armed_seconds: 86400 }),
			base
		).catch((e: unknown) => e);
		expect(refused).toBeInstanceOf(ServiceError);
		expect(refused).toMatchObject({ status: 400, fields: { node: 'is not an appliance' } });
	});
});
