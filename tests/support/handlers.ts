import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { listRoutes } from './routes';

/**
 * Every request handler of the console, read from the source under src/routes: each method a +server.ts
 * exports, each page's load (a GET) and each form action a +page.server.ts exports, with the zod schemas that
 * check its input. The schemas are found where the handler (or a function it calls, in the same file or an
 * imported `$lib` module, two calls deep) hands input to `readJson`, `readQuery`, `parseForm`, `validate` or
 * a schema's own `safeParse`/`parse`. A generated test suite walks this list, so a new route, method, action
 * or schema is covered the day it is written.
 */

/** How to rebuild a schema outside the console: an export of a module, or an object literal of such parts. */
export type SchemaRef =
	| { kind: 'export'; module: string; name: string }
	| { kind: 'object'; shape: Record<string, SchemaRef | null> }
	| { kind: 'merge'; parts: SchemaRef[] };

export type InputPlace = 'json' | 'query' | 'form';

export interface SchemaUse {
	place: InputPlace;
	schema: SchemaRef;
}

export interface Handler {
	routeId: string;
	method: string;
	/** The form action's name; absent for endpoints and page loads. */
	action?: string;
	kind: 'endpoint' | 'load' | 'action';
	schemas: SchemaUse[];
	/** Whether anything the client sends (body, query, params, headers) is read at all. */
	readsInput: boolean;
}

const root = path.resolve('.');
const lib = path.join(root, 'src/lib');
const methods = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const inputReaders =
	/\b(readJson|readQuery|parseForm|readFormData|formData|params|searchParams|request\.(json|text|body))\b/;

interface Module {
	file: string;
	source: ts.SourceFile;
	/** Local name → where it is imported from (a resolved file) and under which name. */
	imports: Map<string, { file: string; name: string }>;
	/** Module-level `const x = …` and `function x() {}`. */
	locals: Map<string, ts.Node>;
}

const modules = new Map<string, Module>();

function resolveImport(from: string, spec: string): string | null {
	let base: string;
	if (spec.startsWith('$lib/')) base = path.join(lib, spec.slice(5));
	else if (spec.startsWith('.')) base = path.resolve(path.dirname(from), spec);
	else return null;
	for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
		try {
			readFileSync(candidate);
			return candidate;
		} catch {
			// not this one
		}
	}
	return null;
}

function loadModule(file: string): Module {
	const known = modules.get(file);
	if (known) return known;
	const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
	const mod: Module = { file, source, imports: new Map(), locals: new Map() };
	for (const stmt of source.statements) {
		if (ts.isImportDeclaration(stmt) && ts.isStringLiteral(stmt.moduleSpecifier)) {
			const target = resolveImport(file, stmt.moduleSpecifier.text);
			const named = stmt.importClause?.namedBindings;
			if (target && named && ts.isNamedImports(named)) {
				for (const el of named.elements) {
					mod.imports.set(el.name.text, { file: target, name: (el.propertyName ?? el.name).text });
				}
			}
		} else if (ts.isVariableStatement(stmt)) {
			for (const d of stmt.declarationList.declarations) {
				if (ts.isIdentifier(d.name) && d.initializer) mod.locals.set(d.name.text, d.initializer);
			}
		} else if (ts.isFunctionDeclaration(stmt) && stmt.name) {
			mod.locals.set(stmt.name.text, stmt);
		}
	}
	modules.set(file, mod);
	return mod;
}

const unwrap = (node: ts.Node): ts.Node => {
	while (ts.isSatisfiesExpression(node) || ts.isAsExpression(node) || ts.isParenthesizedExpression(node)) {
		node = node.expression;
	}
	return node;
};

/** The schema an expression names, when it can be rebuilt from exports of modules (a literal `z.object` too). */
function schemaRef(mod: Module, expr: ts.Node, seen = new Set<string>()): SchemaRef | null {
	expr = unwrap(expr);
	if (ts.isIdentifier(expr)) {
		const imported = mod.imports.get(expr.text);
		if (imported) {
			if (imported.file.startsWith(path.join(lib, 'schemas'))) {
				return { kind: 'export', module: imported.file, name: imported.name };
			}
			return null;
		}
		const local = mod.locals.get(expr.text);
		if (!local || seen.has(expr.text) || ts.isFunctionDeclaration(local)) return null;
		return schemaRef(mod, local, new Set([...seen, expr.text]));
	}
	if (ts.isCallExpression(expr) && ts.isPropertyAccessExpression(expr.expression)) {
		const callee = expr.expression;
		const arg = expr.arguments[0];
		if (callee.name.text === 'object' && ts.isIdentifier(callee.expression) && callee.expression.text === 'z') {
			return arg && ts.isObjectLiteralExpression(arg) ? objectRef(mod, arg, seen) : null;
		}
		if (['extend', 'and', 'merge'].includes(callee.name.text) && arg) {
			const left = schemaRef(mod, callee.expression, seen);
			const right = ts.isObjectLiteralExpression(arg)
				? objectRef(mod, arg, seen)
				: schemaRef(mod, ts.isPropertyAccessExpression(arg) && arg.name.text === 'shape' ? arg.expression : arg, seen);
			const parts = [left, right].filter((p): p is SchemaRef => p !== null);
			return parts.length ? { kind: 'merge', parts } : null;
		}
	}
	return null;
}

function objectRef(mod: Module, literal: ts.ObjectLiteralExpression, seen: Set<string>): SchemaRef {
	const shape: Record<string, SchemaRef | null> = {};
	for (const p of literal.properties) {
		if (ts.isPropertyAssignment(p) && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) {
			shape[p.name.text] = schemaRef(mod, p.initializer, seen);
		} else if (ts.isShorthandPropertyAssignment(p)) {
			shape[p.name.text] = schemaRef(mod, p.name, seen);
		}
	}
	return { kind: 'object', shape };
}

/** The schemas a function body checks input with, following calls into its module and imported `$lib` ones. */
function schemaUses(mod: Module, body: ts.Node, place: InputPlace, depth: number, out: SchemaUse[]): void {
	const add = (expr: ts.Node | undefined, at: InputPlace) => {
		const ref = expr && schemaRef(mod, expr);
		if (ref) out.push({ place: at, schema: ref });
	};
	const visit = (node: ts.Node) => {
		if (ts.isCallExpression(node)) {
			const callee = node.expression;
			const [first, second] = node.arguments;
			if (ts.isIdentifier(callee)) {
				if (callee.text === 'readJson') add(second, 'json');
				else if (callee.text === 'readQuery') add(second, 'query');
				else if (callee.text === 'parseForm') add(second, 'form');
				else if (callee.text === 'validate') add(first, place);
				else if (depth < 2) follow(callee.text);
			} else if (ts.isPropertyAccessExpression(callee) && ['safeParse', 'parse'].includes(callee.name.text)) {
				add(callee.expression, place);
			}
		}
		ts.forEachChild(node, visit);
	};
	const follow = (name: string) => {
		const local = mod.locals.get(name);
		if (local) return schemaUses(mod, local, place, depth + 1, out);
		const imported = mod.imports.get(name);
		if (!imported || imported.file.startsWith(path.join(lib, 'schemas'))) return;
		const other = loadModule(imported.file);
		const fn = other.locals.get(imported.name);
		if (fn) schemaUses(other, fn, place, depth + 1, out);
	};
	visit(body);
}

/** Whether a handler (or what it calls in its own file) reads anything the client sent. */
function readsInput(mod: Module, body: ts.Node, depth = 0): boolean {
	if (inputReaders.test(body.getText(mod.source))) return true;
	let found = false;
	const visit = (node: ts.Node) => {
		if (found) return;
		if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && depth < 2) {
			const name = node.expression.text;
			const local = mod.locals.get(name);
			const imported = mod.imports.get(name);
			if (local) found = readsInput(mod, local, depth + 1);
			else if (imported && !imported.file.startsWith(path.join(lib, 'server'))) found = false;
			else if (imported) {
				const other = loadModule(imported.file);
				const fn = other.locals.get(imported.name);
				found = !!fn && readsInput(other, fn, depth + 1);
			}
		}
		ts.forEachChild(node, visit);
	};
	visit(body);
	return found;
}

function exported(mod: Module): Map<string, ts.Node> {
	const out = new Map<string, ts.Node>();
	for (const stmt of mod.source.statements) {
		const isExported =
			ts.canHaveModifiers(stmt) && ts.getModifiers(stmt)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
		if (!isExported) continue;
		if (ts.isVariableStatement(stmt)) {
			for (const d of stmt.declarationList.declarations) {
				if (ts.isIdentifier(d.name) && d.initializer) out.set(d.name.text, d.initializer);
			}
		} else if (ts.isFunctionDeclaration(stmt) && stmt.name) {
			out.set(stmt.name.text, stmt);
		}
	}
	return out;
}

export function listHandlers(): Handler[] {
	const handlers: Handler[] = [];
	const routesDir = path.join(root, 'src/routes');
	for (const route of listRoutes(routesDir)) {
		const dir = path.join(routesDir, route.id);
		if (route.endpoint) {
			const mod = loadModule(path.join(dir, '+server.ts'));
			for (const [name, body] of exported(mod)) {
				if (!methods.has(name)) continue;
				const schemas: SchemaUse[] = [];
				schemaUses(mod, body, name === 'GET' ? 'query' : 'json', 0, schemas);
				handlers.push({
					routeId: route.id,
					method: name,
					kind: 'endpoint',
					schemas,
					readsInput: readsInput(mod, body)
				});
			}
		}
		if (!route.page) continue;
		let mod: Module;
		try {
			mod = loadModule(path.join(dir, '+page.server.ts'));
		} catch {
			handlers.push({ routeId: route.id, method: 'GET', kind: 'load', schemas: [], readsInput: false });
			continue;
		}
		const exports = exported(mod);
		const load = exports.get('load');
		const loadSchemas: SchemaUse[] = [];
		if (load) schemaUses(mod, load, 'query', 0, loadSchemas);
		handlers.push({
			routeId: route.id,
			method: 'GET',
			kind: 'load',
			schemas: loadSchemas,
			readsInput: !!load && readsInput(mod, load)
		});
		const actions = exports.get('actions');
		const literal = actions && unwrap(actions);
		if (!literal || !ts.isObjectLiteralExpression(literal)) continue;
		for (const p of literal.properties) {
			if (!p.name || !(ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) continue;
			const body = ts.isPropertyAssignment(p) ? p.initializer : p;
			const schemas: SchemaUse[] = [];
			schemaUses(mod, body, 'form', 0, schemas);
			handlers.push({
				routeId: route.id,
				method: 'POST',
				action: p.name.text,
				kind: 'action',
				schemas,
				readsInput: readsInput(mod, body)
			});
		}
	}
	return handlers;
}
