import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CodeRole } from '$lib/server/db/schema';
import { probeHealth, type Exec } from './health';

/** Runs the probe's command with the local shell and the local curl, as a node's shell would. */
const localExec: Exec = (command) =>
	new Promise((resolve) => {
		execFile('sh', ['-c', command.script], (err, stdout, stderr) => {
			const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
			resolve({ exitCode: code, signal: null, durationMs: 0, stdout, stderr, timedOut: false, cancelled: false });
		});
	});

const httpRole = (url: string) =>
	({ name: 'web', method: 'git', health: { type: 'http', url } }) as unknown as CodeRole;

describe('the http health check', () => {
	let server: Server;
	let base: string;
	const seen: string[] = [];
	beforeAll(async () => {
		server = createServer((req, res) => {
			seen.push(req.url ?? '');
			res.statusCode = req.url?.startsWith('/down') ? 503 : 200;
			res.end();
		});
		await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
		base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
	});
	afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

	it('fetches the stored URL as it is: brackets and braces are not curl patterns for several URLs', async () => {
		seen.length = 0;
		expect(await probeHealth(localExec, httpRole(`${base}/status?node={a,b}&slot=[1-2]`))).toBeNull();
		expect(seen).toEqual(['/status?node={a,b}&slot=[1-2]']);
	});

	it('reports an unhealthy answer with curl’s reason', async () => {
		expect(await probeHealth(localExec, httpRole(`${base}/down`))).toMatch(/failed \(exit 22: .*503/);
	});
});
