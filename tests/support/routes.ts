import { readdirSync } from 'node:fs';
import path from 'node:path';

/**
 * Every route of the console, read from the files under src/routes: a folder with a +page.svelte or a
 * +server.ts is a route, and its id is the folder's path (groups included), as SvelteKit names it.
 * The authorisation tests are generated from this list, so a new route is covered the day it is added.
 */
export interface RouteFile {
	id: string;
	page: boolean;
	endpoint: boolean;
}

export function listRoutes(root = path.resolve('src/routes')): RouteFile[] {
	const routes: RouteFile[] = [];
	const walk = (dir: string) => {
		const entries = readdirSync(dir, { withFileTypes: true });
		const names = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
		const page = names.has('+page.svelte');
		const endpoint = names.has('+server.ts') || names.has('+server.js');
		if (page || endpoint) {
			const rel = path.relative(root, dir).split(path.sep).join('/');
			routes.push({ id: '/' + rel, page, endpoint });
		}
		for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
	};
	walk(root);
	return routes.sort((a, b) => a.id.localeCompare(b.id));
}
