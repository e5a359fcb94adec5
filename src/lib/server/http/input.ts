/**
 * What no client input may carry, whatever its field: NUL characters (PostgreSQL's text refuses them, so they
 * failed whole statements as 500s) and object keys that reach an object's prototype (`__proto__`,
 * `constructor`, `prototype`: a record keyed by them broke lookups). Checked once where bodies, forms and
 * query strings enter (api.ts, forms.ts, hooks.server.ts), so every endpoint and form gets it.
 */

const prototypeKeys = new Set(['__proto__', 'constructor', 'prototype']);
/** Deeper than any input of the console's; a deeper body is refused before anything walks it further. */
const MAX_DEPTH = 32;

/** The problems in a parsed value, by field path (`expect.constructor`, `nodes.2`); empty when there are none. */
export function inputProblems(value: unknown): Record<string, string> {
	const problems: Record<string, string> = {};
	const walk = (v: unknown, path: string, depth: number) => {
		if (typeof v === 'string') {
			if (v.includes('\0')) problems[path] = 'must not contain NUL characters';
			return;
		}
		if (v === null || typeof v !== 'object') return;
		if (depth > MAX_DEPTH) {
			problems[path] = `is nested more than ${MAX_DEPTH} levels deep`;
			return;
		}
		for (const [key, child] of Object.entries(v)) {
			const at = path ? `${path}.${key}` : key;
			if (prototypeKeys.has(key)) problems[at] = `${key} is not allowed as a name`;
			else if (key.includes('\0')) problems[path || key] = 'names must not contain NUL characters';
			else walk(child, at, depth + 1);
		}
	};
	walk(value, '', 0);
	return problems;
}

/** The problems in a form's or a query string's text values and names. */
export function entryProblems(entries: Iterable<[string, FormDataEntryValue]>): Record<string, string> {
	const problems: Record<string, string> = {};
	for (const [key, value] of entries) {
		if (key.includes('\0')) problems[key.replaceAll('\0', '\uFFFD')] = 'names must not contain NUL characters';
		else if (typeof value === 'string' && value.includes('\0')) problems[key] = 'must not contain NUL characters';
	}
	return problems;
}
