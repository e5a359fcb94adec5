import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * What the runbooks (docs/runbooks/) name in their prose, besides the shell examples that tests/e2e/docs-examples
 * runs: every API call they name (`POST /api/...`) must be a route that answers that method, and every control
 * they name in bold (**Settings → SSH key rotation → Dry run**) must be a label some page shows, so that an
 * operator following a runbook finds what it says, where it says.
 */

const dir = 'docs/runbooks';
const runbooks = readdirSync(dir).filter((f) => f.endsWith('.md'));
/** Bold words that are emphasis in the text, not something the console shows. */
const EMPHASIS = new Set(['abort point']);

/** Every page and component's source, where the console's labels are written. */
function svelteSources(root: string): string[] {
	return readdirSync(root).flatMap((entry) => {
		const path = join(root, entry);
		if (statSync(path).isDirectory()) return svelteSources(path);
		return path.endsWith('.svelte') ? [readFileSync(path, 'utf8')] : [];
	});
}
const pages = [...svelteSources('src/routes'), ...svelteSources('src/lib/components')].join('\n');

/** The route file that serves `path` (`{id}` matching any `[param]` folder), if any. */
function routeFile(path: string, at = 'src/routes'): string | null {
	const [first, ...rest] = path.split('/').filter(Boolean);
	if (first === undefined) {
		const file = join(at, '+server.ts');
		return existsSync(file) ? file : null;
	}
	const candidates = /^\{.+\}$/.test(first)
		? readdirSync(at).filter((d) => /^\[[^.\]]+\]$/.test(d))
		: readdirSync(at).filter((d) => d === first);
	for (const c of candidates) {
		if (!statSync(join(at, c)).isDirectory()) continue;
		const found = routeFile(rest.join('/'), join(at, c));
		if (found) return found;
	}
	return null;
}

describe.each(runbooks)('docs/runbooks/%s', (file) => {
	const text = readFileSync(join(dir, file), 'utf8');
	// The prose only: what the shell examples do is docs-examples' to check.
	const prose = text.replace(/```[\s\S]*?```/g, '');

	it('names only API calls that exist, with their method', () => {
		const calls = [...prose.matchAll(/`(GET|POST|PUT|PATCH|DELETE)\s+(\/api\/[^\s`?]+)/g)].map(
			([, m, p]) => [m!, p!] as const
		);
		for (const [method, path] of calls) {
			const route = routeFile(path);
			expect(route, `${method} ${path}`).not.toBeNull();
			expect(readFileSync(route!, 'utf8'), `${method} ${path}`).toMatch(new RegExp(`export const ${method}\\b`));
		}
	});

	it('names only pages and controls the console shows', () => {
		const labels = [...prose.matchAll(/\*\*([^*]+)\*\*/g)]
			.flatMap(([, bold]) => bold!.split('→').map((l) => l.replace(/\s+/g, ' ').trim()))
			.filter((l) => !EMPHASIS.has(l));
		for (const label of labels) expect(pages.includes(label), label).toBe(true);
	});
});
