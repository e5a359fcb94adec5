/** `npm run bench:cert-scan`: see bench/cert-scan.ts for what is measured. */
import { test } from 'vitest';
import { benchmarkCertScan } from './cert-scan';

test('a certificate scan against ansible-playbook, a script per host and parallel-ssh', async () => {
	await benchmarkCertScan();
});
