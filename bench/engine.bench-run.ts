/** `npm run bench:engine`: see bench/engine.ts for what is measured and bench/README.md for how to read it. */
import { test } from 'vitest';
import { benchmarkEngine } from './engine';

test('update engine: 2,000 simulated nodes on PGlite and PostgreSQL', async () => {
	await benchmarkEngine();
});
