/** `npm run bench:code-sync`: see bench/code-sync.ts for what is measured and bench/README.md for how to read it. */
import { test } from 'vitest';
import { benchmarkCodeSync } from './code-sync';

test('Update All against ansible-playbook and parallel-ssh', async () => {
	await benchmarkCodeSync();
});
