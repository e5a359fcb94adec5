import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

/**
 * The default boot health checks (appliance/health.d, docs/appliances.md "Health checks"), run as the gate runs
 * them, in a folder standing for /etc/flotilla. `systemctl` and `timedatectl` (systemd) and `ip` (the route
 * table, which a test cannot change on this machine) are stand-ins first on PATH; ping, curl and the console's
 * /healthz are real, on 127.0.1.249–250.
 */

const run = promisify(execFile);
const checksDir = new URL('../../appliance/health.d/', import.meta.url).pathname;
const helper = new URL('../../appliance/flotilla-slot', import.meta.url).pathname;
const checks = ['10-network', '20-service', '30-console', '40-time'];

let root: string;
let env: NodeJS.ProcessEnv;
let consoleServer: Server;
let consoleUrl = '';
let refusingUrl = '';
let failingUrl = '';

async function check(name: string): Promise<{ code: number; out: string }> {
	try {
		const r = await run(join(checksDir, name), [], { env });
		return { code: 0, out: `${r.stdout}${r.stderr}` };
	} catch (e) {
		const x = e as { code: number; stdout: string; stderr: string };
		return { code: x.code, out: `${x.stdout}${x.stderr}` };
	}
}

async function slot(...args: string[]): Promise<{ code: number; out: string; err: string }> {
	try {
		const r = await run('sh', [helper, ...args], { env });
		return { code: 0, out: r.stdout, err: r.stderr };
	} catch (e) {
		const x = e as { code: number; stdout: string; stderr: string };
		return { code: x.code, out: x.stdout, err: x.stderr };
	}
}

const state = (name: string, text: string) => writeFile(join(root, 'state', name), text);
const conf = (name: string, lines: string[]) => writeFile(join(root, 'etc', name), lines.map((l) => `${l}\n`).join(''));

const stubs: Record<string, (dir: string) => string> = {
	// `ip route show default` prints the route file; `ip -6 …` has none.
	ip: (dir) => `#!/bin/sh
[ "$1" = -6 ] && exit 0
[ "$*" = "route show default" ] || { echo "ip (stand-in): unexpected $*" >&2; exit 2; }
cat ${dir}/route
`,
	systemctl: (dir) => `#!/bin/sh
[ "$1" = is-active ] || { echo "systemctl (stand-in): unexpected $*" >&2; exit 2; }
current=$(cat "${dir}/unit-$2" 2>/dev/null || echo inactive)
echo "$current"
[ "$current" = active ] || exit 3
`,
	timedatectl: (dir) => `#!/bin/sh
[ "$*" = "show -p NTPSynchronized --value" ] || { echo "timedatectl (stand-in): unexpected $*" >&2; exit 2; }
cat ${dir}/ntp
`
};

function listen(address: string, status: number): Promise<Server> {
	const server = createServer((req, res) => {
		res.writeHead(req.url === '/healthz' ? status : 404);
		res.end();
	});
	return new Promise((resolve) => server.listen(0, address, () => resolve(server)));
}
const urlOf = (server: Server) => {
	const { address, port } = server.address() as AddressInfo;
	return `http://${address}:${port}/healthz`;
};

beforeAll(async () => {
	consoleServer = await listen('127.0.1.249', 200);
	consoleUrl = urlOf(consoleServer);
	const failing = await listen('127.0.1.250', 500);
	failingUrl = urlOf(failing);
	// A port nothing listens on any more: the connection is refused.
	const closed = await listen('127.0.1.250', 200);
	refusingUrl = urlOf(closed);
	await new Promise((r) => closed.close(r));
	// The 500 server lives as long as the suite; closed with it.
	consoleServer.on('close', () => failing.close());
});

afterAll(() => new Promise((r) => consoleServer.close(r)));

beforeEach(async () => {
	root = await mkdtemp(join(tmpdir(), 'flotilla-health-'));
	for (const d of ['etc/health.d', 'bin', 'state', 'boot']) await mkdir(join(root, d), { recursive: true });
	for (const [name, text] of Object.entries(stubs)) {
		await writeFile(join(root, 'bin', name), text(join(root, 'state')), { mode: 0o755 });
	}
	env = {
		...process.env,
		PATH: `${join(root, 'bin')}:${process.env.PATH}`,
		FLOTILLA_CONF_DIR: join(root, 'etc'),
		FLOTILLA_SLOT_DIR: join(root, 'boot')
	};
	// Healthy: a gateway that answers, the service active, the console up, the clock synchronised.
	await state('route', 'default via 127.0.1.249 dev lo proto static\n');
	await state('unit-appliance', 'active\n');
	await state('ntp', 'yes\n');
	await conf('health.conf', ['services=appliance']);
	await conf('watchdog.conf', [`console_url='${consoleUrl}'`, 'unreachable_seconds=600']);
});

afterEach(() => rm(root, { recursive: true, force: true }));

describe('the default health checks', () => {
	it('pass on a healthy appliance, each saying what it checked', async () => {
		expect(await check('10-network')).toEqual({ code: 0, out: 'network: default route, 127.0.1.249 answers\n' });
		expect(await check('20-service')).toEqual({ code: 0, out: 'service: appliance active\n' });
		expect(await check('30-console')).toEqual({ code: 0, out: `console: ${consoleUrl} answers\n` });
		expect(await check('40-time')).toEqual({ code: 0, out: 'time: synchronised (timedatectl)\n' });
	});

	it('network: fails without a default route, or without a gateway or host to ask; asks network_host when set', async () => {
		await state('route', '');
		expect(await check('10-network')).toEqual({ code: 1, out: 'network: no default route\n' });
		await state('route', 'default dev ppp0 scope link\n');
		expect(await check('10-network')).toEqual({
			code: 1,
			out: `network: the default route has no gateway to ask; set network_host in ${join(root, 'etc')}/health.conf\n`
		});
		await conf('health.conf', ['services=appliance', 'network_host=127.0.1.250']);
		expect(await check('10-network')).toEqual({ code: 0, out: 'network: default route, 127.0.1.250 answers\n' });
	});

	it('service: fails naming each unit that is not active, and when no unit is configured', async () => {
		await conf('health.conf', ['services="appliance worker"']);
		await state('unit-worker', 'active\n');
		expect(await check('20-service')).toEqual({ code: 0, out: 'service: appliance worker active\n' });
		await state('unit-appliance', 'failed\n');
		await rm(join(root, 'state/unit-worker'));
		expect(await check('20-service')).toEqual({
			code: 1,
			out: 'service: appliance is failed, worker is inactive\n'
		});
		await conf('health.conf', ['network_host=127.0.1.250']);
		expect(await check('20-service')).toEqual({
			code: 1,
			out: `service: no service to check; name the appliance's unit(s) in services= in ${join(root, 'etc')}/health.conf\n`
		});
	});

	it('console: fails when the console refuses the connection, answers with an error, or is not configured', async () => {
		await conf('watchdog.conf', [`console_url='${refusingUrl}'`]);
		const refused = await check('30-console');
		expect(refused.code).toBe(1);
		expect(refused.out).toMatch(
			new RegExp(`^console: ${refusingUrl.replaceAll('.', '\\.')} unreachable: curl: \\(7\\) .*\\n$`)
		);
		await conf('watchdog.conf', [`console_url='${failingUrl}'`]);
		const erred = await check('30-console');
		expect(erred.code).toBe(1);
		expect(erred.out).toMatch(/unreachable: curl: \(22\) The requested URL returned error: 500\n$/);
		await rm(join(root, 'etc/watchdog.conf'));
		expect(await check('30-console')).toEqual({
			code: 1,
			out: `console: no console_url in ${join(root, 'etc')}/watchdog.conf\n`
		});
	});

	it('time: fails when the clock is not synchronised', async () => {
		await state('ntp', 'no\n');
		expect(await check('40-time')).toEqual({
			code: 1,
			out: 'time: not synchronised (timedatectl: NTPSynchronized=no)\n'
		});
	});

	it('are the health gate of flotilla-slot: a failed check keeps the slot uncommitted and says why', async () => {
		for (const name of checks) await copyFile(join(checksDir, name), join(root, 'etc/health.d', name));
		await run('sh', [helper, 'init', 'a'], { env });
		const passed = await slot('--check');
		expect(passed.code).toBe(0);
		expect(passed.out).toMatch(/^gate: 10-network ok\ngate: 20-service ok\ngate: 30-console ok\ngate: 40-time ok\n/);
		expect(passed.err).toBe('');

		await state('unit-appliance', 'inactive\n');
		await state('ntp', 'no\n');
		const failed = await slot('--check');
		expect(failed.code).toBe(1);
		expect(failed.out).toMatch(
			/^gate: 10-network ok\ngate: 20-service failed\ngate: 30-console ok\ngate: 40-time failed\n/
		);
		expect(failed.err).toBe(
			'gate: 20-service: service: appliance is inactive\ngate: 40-time: time: not synchronised (timedatectl: NTPSynchronized=no)\n'
		);
		expect(failed.out).toMatch(/^last_gate=a failed 20-service 40-time$/m);
	});
});
