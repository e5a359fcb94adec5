/**
 * What no client input may carry, whatever its field: NUL characters (PostgreSQL's text refuses them, so they
 * failed whole statements as 500s), lone UTF-16 surrogates (jsonb refuses them too), and object keys that reach an object's prototype (`__proto__`,
 * `constructor`, `prototype`: a record keyed by them broke lookups). Checked once where bodies, forms and
 * query strings enter (api.ts, forms.ts, hooks.server.ts), so every endpoint and form gets it.
 */

const prototypeKeys = new Set(['__proto__', 'constructor', 'prototype']);
/** Deeper than any input of the console's; a deeper body is refused before anything walks it further. */
const MAX_DEPTH = 32;

/**
 * JSON can spell half of a UTF-16 surrogate pair (`"\ud800"`), which no UTF-8 text holds: PostgreSQL's jsonb
 * refuses it (a 500 where such a string reached an audit row's details). URLs and forms cannot carry one.
 */
const notUnicode = 'must be valid Unicode text (a lone surrogate such as \\ud800 is not)';

/** The problems in a parsed value, by field path (`expect.constructor`, `nodes.2`); empty when there are none. */
export function inputProblems(value: unknown): Record<string, string> {
	const problems: Record<string, string> = {};
	const walk = (v: unknown, path: string, depth: number) => {
		if (typeof v === 'string') {
			if (v.includes('\0')) note(problems, path, 'must not contain NUL characters');
			else if (!v.isWellFormed()) note(problems, path, notUnicode);
			return;
		}
		if (v === null || typeof v !== 'object') return;
		if (depth > MAX_DEPTH) {
			note(problems, path, `is nested more than ${MAX_DEPTH} levels deep`);
			return;
		}
		for (const [key, child] of Object.entries(v)) {
			const at = path ? `${path}.${key}` : key;
			if (prototypeKeys.has(key)) note(problems, at, `${key} is not allowed as a name`);
			else if (key.includes('\0')) note(problems, path || key, 'names must not contain NUL characters');
			else if (!key.isWellFormed()) note(problems, path || '_', `names ${notUnicode}`);
			else walk(child, at, depth + 1);
		}
	};
	walk(value, '', 0);
	return problems;
}

/** The problems in a form's or a query string's text values and names (prototype keys among them). */
export function entryProblems(entries: Iterable<[string, FormDataEntryValue]>): Record<string, string> {
	const problems: Record<string, string> = {};
	for (const [key, value] of entries) {
		if (key.includes('\0')) note(problems, key.replaceAll('\0', '\uFFFD'), 'names must not contain NUL characters');
		// Pages and endpoints turn query strings and forms into objects (`Object.fromEntries`): an own `__proto__`
		// there broke the page's serialisation as a 500.
		else if (prototypeKeys.has(key)) note(problems, key, `${key} is not allowed as a name`);
		else if (typeof value === 'string' && value.includes('\0')) note(problems, key, 'must not contain NUL characters');
	}
	return problems;
}

/**
 * Files a problem under its field. A bare `__proto__` is filed under `_` (the input as a whole): as a key of the
 * problems object it would set that object's prototype, and the problem would silently vanish.
 */
function note(problems: Record<string, string>, field: string, message: string): void {
	problems[field === '__proto__' ? '_' : field] = message;
}
