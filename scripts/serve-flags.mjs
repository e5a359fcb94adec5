// The node flags the console is served with are `npm run serve`'s (package.json): the quick start, the browser
// tests and the engine benchmark read them here, so each runs the console as it ships. Run directly, prints them.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * `npm run serve`'s node flags, e.g. ['--liftoff-only', '--max-http-header-size=131072'].
 * @returns {string[]}
 */
export function serveNodeFlags() {
	const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
	return pkg.scripts.serve.split(/\s+/).filter((/** @type {string} */ arg) => arg.startsWith('--'));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(serveNodeFlags().join(' '));
