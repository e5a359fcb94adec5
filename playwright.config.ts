import { defineConfig } from '@playwright/test';

const port = Number(process.env.FLOTILLA_E2E_PORT ?? 4391);
const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
	testDir: 'tests/e2e',
	// One console, one database: the specs share its users, so they run one after another.
	workers: 1,
	fullyParallel: false,
	forbidOnly: !!process.env.CI,
	retries: 0,
	reporter: [['list']],
	timeout: 60_000,
	// Two-core CI machines sign in (argon2) and start test hosts while Chromium runs: allow a slow moment.
	expect: { timeout: 10_000 },
	use: {
		baseURL,
		browserName: 'chromium',
		// Debian's Chromium: test tools never download a browser here.
		launchOptions: {
			executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
			args: [
				'--no-sandbox',
				'--disable-gpu',
				'--disable-background-networking',
				'--disable-component-update',
				'--disable-sync'
			]
		},
		screenshot: 'only-on-failure',
		trace: 'retain-on-failure'
	},
	projects: [
		{ name: 'setup', testMatch: /first-admin\.setup\.ts/ },
		{ name: 'console', testMatch: /\.spec\.ts/, dependencies: ['setup'] }
	],
	webServer: {
		command: 'node tests/e2e/serve.mjs',
		url: `${baseURL}/healthz`,
		reuseExistingServer: false,
		timeout: 120_000,
		stdout: 'pipe',
		stderr: 'pipe',
		// No health sweep: it would change node states under the tests' feet at an unpredictable moment.
		// The sweep has its own tests (tests/integration/code-sync.spec.ts).
		env: {
			PORT: String(port),
			HOST: '127.0.0.1',
			ORIGIN: baseURL,
			FLOTILLA_HEALTH_SWEEP_SECONDS: '0',
			// The release signing secret tests/e2e/rollouts.spec.ts signs its manifests with; rollouts turn every second.
			FLOTILLA_RELEASE_SIGNING_SECRET: 'e2e-release-signing-secret-0123',
			FLOTILLA_ROLLOUT_TICK_SECONDS: '1',
			// Staged system updates move on within the test (tests/e2e/system-updates.spec.ts).
			FLOTILLA_SYSTEM_STAGE_TICK_SECONDS: '1',
			// The public half of the Ed25519 test key tests/e2e/appliances.spec.ts signs its releases and images with.
			FLOTILLA_RELEASE_PUBLIC_KEYS: 'iw+AfOzIO7mej9/eb1M9ztyLxYqJ11K1QH6D49WcV9E='
		}
	}
});
