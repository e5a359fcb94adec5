import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The directions of docs/development.md ("Folders and the directions between them"), held by reading every
 * import in src/: routes → domain services (src/lib/server/<domain>/) → engine (through engine/index.ts only)
 * → ssh → db. Each rule below fails with the offending file and import.
 */

const root = resolve('src');
const server = join(root, 'lib/server');

function filesUnder(dir: string): string[] {
	return readdirSync(dir).flatMap((name) => {
		const path = join(dir, name);
		if (statSync(path).isDirectory()) return filesUnder(path);
		return /\.(ts|svelte)$/.test(name) && !/\.spec\.ts$/.test(name) ? [path] : [];
	});
}

interface Import {
	file: string;
	/** The imported module as an absolute path under src/ (without extension), or the bare package name. */
	target: string;
	names: string;
	typeOnly: boolean;
}

const importPattern = /import\s+(type\s+)?([^'";]*?)\s*from\s*'([^']+)'/g;

function importsOf(file: string): Import[] {
	const text = readFileSync(file, 'utf8');
	return [...text.matchAll(importPattern)].map(([, type, names, spec]) => {
		let target = spec!;
		if (target.startsWith('$lib/')) target = join(root, 'lib', target.slice(5));
		else if (target.startsWith('.')) target = resolve(dirname(file), target);
		return { file, target: target.replace(/\.(ts|js)$/, ''), names: names ?? '', typeOnly: !!type };
	});
}

const all = filesUnder(root).flatMap(importsOf);
const rel = (p: string) => relative(root, p);
const show = (i: Import) => `${rel(i.file)} imports ${i.target.startsWith('/') ? rel(i.target) : i.target}`;
const within = (path: string, folder: string) => path === folder || path.startsWith(`${folder}/`);

/** The first folder (or module) under src/lib/server a path is in: `engine`, `fleet`, `db`, `log`… */
function serverUnit(path: string): string | null {
	if (!within(path, server)) return null;
	return relative(server, path)
		.split('/')[0]!
		.replace(/\.(ts|js)$/, '');
}

const engine = join(server, 'engine');
/** What the engine may use: the database, SSH, and the console's plumbing. Everything else is a domain. */
const belowEngine = new Set(['db', 'ssh', 'log', 'errors', 'audit']);
/** The engine's own tables, as db/schema exports them. */
const engineTables = ['runs', 'tasks', 'taskSteps', 'events'];

describe('the directions between folders', () => {
	it('the engine imports no domain: only the database, SSH and plumbing', () => {
		const wrong = all.filter((i) => {
			if (!within(i.file, engine)) return false;
			const unit = serverUnit(i.target);
			return unit !== null && unit !== 'engine' && !belowEngine.has(unit);
		});
		expect(wrong.map(show)).toEqual([]);
	});

	it('outside the engine, everything goes through engine/index.ts', () => {
		const wrong = all.filter((i) => !within(i.file, engine) && within(i.target, engine) && i.target !== engine);
		expect(wrong.map(show)).toEqual([]);
	});

	it("nothing outside the engine (and the schema) reads the engine's tables", () => {
		const schema = join(server, 'db/schema');
		const byImport = all.filter((i) => {
			if (within(i.file, engine) || within(i.file, join(server, 'db')) || i.target !== schema || i.typeOnly)
				return false;
			const names = i.names
				.replace(/[{}]/g, '')
				.split(',')
				.map((n) => n.trim());
			return names.some((n) => engineTables.includes(n));
		});
		expect(byImport.map(show)).toEqual([]);
		// Nor in SQL written by hand.
		const bySql = filesUnder(root).filter(
			(f) =>
				!within(f, engine) &&
				!within(f, join(server, 'db')) &&
				/\b(from|join|update|into)\s+(tasks|runs|task_steps|events)\b/i.test(readFileSync(f, 'utf8'))
		);
		expect(bySql.map(rel)).toEqual([]);
	});

	it('routes never reach SSH themselves', () => {
		const wrong = all.filter((i) => within(i.file, join(root, 'routes')) && within(i.target, join(server, 'ssh')));
		expect(wrong.map(show)).toEqual([]);
	});

	it('the folders under src/lib/server import each other without a cycle', () => {
		const edges = new Map<string, Set<string>>();
		for (const i of all) {
			const from = serverUnit(i.file);
			const to = serverUnit(i.target);
			if (from && to && from !== to) (edges.get(from) ?? edges.set(from, new Set()).get(from)!).add(to);
		}
		const cycles: string[] = [];
		const visit = (unit: string, path: string[]) => {
			if (path.includes(unit)) {
				cycles.push([...path.slice(path.indexOf(unit)), unit].join(' → '));
				return;
			}
			for (const next of edges.get(unit) ?? []) visit(next, [...path, unit]);
		};
		for (const unit of edges.keys()) visit(unit, []);
		expect([...new Set(cycles)]).toEqual([]);
	});

	it('reads the imports it judges (the rules above are not vacuous)', () => {
		expect(all.length).toBeGreaterThan(300);
		expect(all.some((i) => within(i.file, engine) && serverUnit(i.target) === 'db')).toBe(true);
		expect(all.some((i) => within(i.file, join(root, 'routes')) && i.target === engine)).toBe(true);
	});
});
