/** `npm run bench:ssh`: see bench/ssh.ts for what is measured and bench/README.md for how to read it. */
import { test } from 'vitest';
import { benchmarkSsh } from './ssh';

test('SSH layer against parallel-ssh, Ansible and scp', async () => {
	await benchmarkSsh();
});
