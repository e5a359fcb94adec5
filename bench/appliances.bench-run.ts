/** `npm run bench:appliances`: see bench/appliances.ts for what is measured and bench/README.md for how to read it. */
import { test } from 'vitest';
import { benchmarkAppliances } from './appliances';

test('an appliance image pushed by the A/B flow against scp', async () => {
	await benchmarkAppliances();
});
