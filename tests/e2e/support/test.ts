import { test as base } from '@playwright/test';

export { expect } from '@playwright/test';

/**
 * Playwright's `test`, closing every browser context a test opened itself (`browser.newContext()`) when it ends.
 * The `browser` fixture lives as long as the worker, and with one worker for the whole suite such contexts stayed
 * open to the end: on CI a late spec failed with 23 live pages open, each on the event stream and reloading its
 * data on every run event.
 */
export const test = base.extend<{ closeOwnContexts: void }>({
	closeOwnContexts: [
		async ({ browser }, use) => {
			const before = new Set(browser.contexts());
			await use();
			await Promise.all(
				browser
					.contexts()
					.filter((c) => !before.has(c))
					.map((c) => c.close())
			);
		},
		{ auto: true }
	]
});
