/**
 * Benchmarks run through Vitest only because it resolves the console's TypeScript modules as the app does;
 * each `*.bench-run.ts` is one long "test" that measures and prints its table. The root vite.config.ts never
 * includes bench/, so `npx vitest run` does not start them.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
	root,
	resolve: { alias: { $lib: `${root}src/lib` } },
	test: {
		include: ['bench/**/*.bench-run.ts'],
		environment: 'node',
		// The testbed ties its hosts' lives to the process that started them: a forked worker, not a thread.
		pool: 'forks',
		fileParallelism: false,
		// Progress and tables go straight to the terminal while the run is still going.
		disableConsoleIntercept: true,
		testTimeout: 60 * 60_000,
		hookTimeout: 5 * 60_000
	}
});
