import { sveltekit } from '@sveltejs/kit/vite';
import tailwindcss from '@tailwindcss/vite';
import { defineConfig } from 'vitest/config';

export default defineConfig({
	plugins: [tailwindcss(), sveltekit()],
	test: {
		include: ['src/**/*.spec.ts', 'tests/integration/**/*.spec.ts', 'tests/testbed/**/*.spec.ts'],
		environment: 'node',
		env: { FLOTILLA_LOG_LEVEL: 'warn' },
		// Integration suites share one PostgreSQL database per file; run files one at a time
		// so their fixtures never interleave.
		fileParallelism: false,
		testTimeout: 30_000,
		hookTimeout: 60_000
	}
});
