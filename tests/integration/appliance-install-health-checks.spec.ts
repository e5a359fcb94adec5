import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installApplianceSchema } from '../../src/lib/schemas/appliances';
import { applianceFiles, defaultHealthChecks, startApplianceInstall } from '../../src/lib/server/appliances/install';
import { systemActor } from '../../src/lib/server/audit';
import { useMasterKey } from '../../src/lib/server/crypto/master-key';
import { useDatabase } from '../../src/lib/server/db';
import type { Node } from '../../src/lib/server/db/schema';
import { registerDomains } from '../../src/lib/server/domains';
import { getRun, readRunLog, startEngine, stopEngine } from '../../src/lib/server/engine';
import { connect } from '../../src/lib/server/ssh/connection';
import { sh } from '../../src/lib/server/ssh/shell';
import { freshPostgres } from '../support/databases';
import { waitForRun } from '../support/engine';
import { registerTestbedNodes } from '../support/testbed-nodes';
import { startTestbed, type Testbed, type TestHost } from '../testbed/testbed';

/**
 * The install run's default health checks (docs/appliances.md, "Health checks") on a real sshd host
 * (127.0.1.249): placed where the appliance has no checks, kept up to date while every check there is a default
 * one, and never written where the appliance has a check of its own. What is installed is read from the host's
 * own files.
 */

let bed: Testbed;
let host: TestHost;
let appliance: Node;
let pg: Awaited<ReturnType<typeof freshPostgres>>;

const names = ['10-network', '20-service', '30-console', '40-time'];
const checkFile = (name: string) => join(host.root, 'etc/flotilla/health.d', name);
const repoCheck = (name: string) => readFile(new URL(`../../appliance/health.d/${name}`, import.meta.url), 'utf8');

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

async function install() {
	const input = installApplianceSchema.parse({ unreachable_seconds: 3600, armed_seconds: 86400 });
	// The console URL is only written into watchdog.conf here; nothing probes it.
	const { runId } = await startApplianceInstall(systemActor, appliance.id, input, 'http://127.0.1.250:3000');
	await waitForRun(runId, ['succeeded', 'failed'], 120_000);
	const log: string[] = [];
	for await (const line of readRunLog(runId)) log.push(`${line.step}: ${line.text}`);
	return { run: await getRun(runId), log };
}

const defaultLines = (how: (name: string) => string) =>
	names.map((n) => `files: ${applianceFiles.healthChecks}/${n}: ${how(n)} (default health check)`);

beforeAll(async () => {
	pg = await freshPostgres('flotilla_appliance_install_health');
	useDatabase(pg);
	useMasterKey(randomBytes(32));
	registerDomains();
	bed = await startTestbed({ hosts: 1, firstHost: 249 });
	host = bed.hosts[0]!;
	appliance = (await registerTestbedNodes(bed, () => ({ kind: 'appliance' })))[0]!;
	await startEngine({ concurrency: 2, leaseMs: 10_000, sweepMs: 1_000 });
}, 120_000);

afterAll(async () => {
	await stopEngine();
	await bed?.stop();
	useMasterKey(undefined);
	useDatabase(undefined);
	await pg?.close();
});

describe('the default health checks of the install run', () => {
	it('are placed where the appliance has no checks, then kept up to date only while every check is a default one', async () => {
		// The testbed's appliance comes with a check of its own; without it, health.d is empty.
		await rm(checkFile('10-appliance'));

		const first = await install();
		expect(first.run.state).toBe('succeeded');
		expect(first.log).toEqual(
			expect.arrayContaining([
				...defaultLines(() => 'installed'),
				`files: no services= in ${applianceFiles.healthConf}: the default service check fails (and the health gate with it) until it names the appliance's unit(s)`,
				'check: 4 health check(s) in /etc/flotilla/health.d'
			])
		);
		// After the helper and watchdog.conf, before the units are enabled.
		const at = (line: string) => first.log.indexOf(line);
		expect(at(`files: ${applianceFiles.watchdogConf}: installed`)).toBeLessThan(
			at(defaultLines(() => 'installed')[0]!)
		);
		expect(at(defaultLines(() => 'installed')[3]!)).toBeLessThan(first.log.findIndex((l) => l.startsWith('units: ')));
		for (const n of names) expect(await readFile(checkFile(n), 'utf8')).toBe(await repoCheck(n));
		expect(await onHost(`cd ${applianceFiles.healthChecks} && stat -c '%n %a %U' *`)).toBe(
			names.map((n) => `${n} 755 root`).join('\n')
		);
		expect(Object.keys(defaultHealthChecks)).toEqual(names);

		// Configured, run again: nothing written, and the service check's units said.
		await writeFile(join(host.root, 'etc/flotilla/health.conf'), 'services="appliance worker"\n');
		const again = await install();
		expect(again.run.state).toBe('succeeded');
		expect(again.log).toEqual(
			expect.arrayContaining([
				...defaultLines(() => 'unchanged'),
				`files: the default service check looks at: appliance worker (services= in ${applianceFiles.healthConf})`
			])
		);

		// An outdated default (it still carries the mark) is brought up to date; the others are left as they are.
		await writeFile(checkFile('10-network'), `${await repoCheck('10-network')}# an older default\n`);
		const updated = await install();
		expect(updated.log).toEqual(
			expect.arrayContaining(defaultLines((n) => (n === '10-network' ? 'installed' : 'unchanged')))
		);
		expect(await readFile(checkFile('10-network'), 'utf8')).toBe(await repoCheck('10-network'));
	}, 240_000);

	it('are never written where the appliance has a check of its own, an edited default without its mark included', async () => {
		// 40-time edited, its mark removed: the appliance's own now; 10-network an outdated default.
		const own = (await repoCheck('40-time')).replace(/^# flotilla-default-check:.*\n/m, '') + '# site change\n';
		await writeFile(checkFile('40-time'), own, { mode: 0o755 });
		const outdated = `${await repoCheck('10-network')}# an older default\n`;
		await writeFile(checkFile('10-network'), outdated);

		const { run, log } = await install();
		expect(run.state).toBe('succeeded');
		expect(log).toContain(
			`files: ${applianceFiles.healthChecks}: the appliance's own health checks (40-time): the default checks are not installed`
		);
		expect(log.filter((l) => l.includes('(default health check)'))).toEqual([]);
		expect(await readFile(checkFile('40-time'), 'utf8')).toBe(own);
		expect(await readFile(checkFile('10-network'), 'utf8')).toBe(outdated);
		expect(log).toContain('check: 4 health check(s) in /etc/flotilla/health.d');
	}, 120_000);
});
