// Starts the built console for the browser and HTTP tests: a fresh PostgreSQL database on the test server
// and a fresh data folder, so every run begins at the set-up page with no users.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { serveNodeFlags } from '../../scripts/serve-flags.mjs';

const adminUrl = process.env.TEST_DATABASE_URL;
if (!adminUrl) {
	console.error('TEST_DATABASE_URL is not set. Run `npm test`, which starts a throwaway PostgreSQL.');
	process.exit(1);
}
const dbName = process.env.FLOTILLA_E2E_DB ?? 'flotilla_e2e';
const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
await admin.unsafe(`drop database if exists "${dbName}" with (force)`);
await admin.unsafe(`create database "${dbName}"`);
await admin.end();

const url = new URL(adminUrl);
url.pathname = `/${dbName}`;
const child = spawn(process.execPath, [...serveNodeFlags(), 'build'], {
	stdio: 'inherit',
	env: {
		...process.env,
		DATABASE_URL: url.toString(),
		FLOTILLA_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'flotilla-e2e-')),
		FLOTILLA_ADMIN_PASSWORD: '',
		FLOTILLA_SECRET_KEY: randomBytes(32).toString('base64'),
		FLOTILLA_LOG_LEVEL: process.env.FLOTILLA_LOG_LEVEL ?? 'warn',
		// Longer than any client's idle keep-alive (fetch's is 4 s): the console never closes a connection a
		// client is about to reuse, which a busy machine would otherwise turn into a rare ECONNRESET.
		KEEP_ALIVE_TIMEOUT: '65'
	}
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 1));
