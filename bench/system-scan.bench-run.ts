/** `npm run bench:system-scan`: see bench/system-scan.ts for what is measured. */
import { test } from 'vitest';
import { benchmarkSystemScan } from './system-scan';

test('a system update scan against ansible -m shell', async () => {
	await benchmarkSystemScan();
});
