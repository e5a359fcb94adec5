import type { openApiDocument } from './document';

type Doc = ReturnType<typeof openApiDocument>;
type JsonSchema = {
	type?: string | string[];
	properties?: Record<string, JsonSchema>;
	required?: string[];
	items?: JsonSchema;
	anyOf?: JsonSchema[];
	oneOf?: JsonSchema[];
	enum?: unknown[];
	const?: unknown;
	additionalProperties?: JsonSchema | boolean;
	[key: string]: unknown;
};

export interface FieldRow {
	name: string;
	type: string;
	required: boolean;
	rules: string[];
	depth: number;
}

export interface OperationView {
	id: string;
	method: string;
	path: string;
	summary: string;
	who: string;
	params: FieldRow[];
	body: FieldRow[] | null;
	bodyNote: string | null;
	example: string | null;
	responses: { status: string; description: string; type: string | null; fields: FieldRow[] }[];
}

/** A schema's type in a few words: `string`, `integer | null`, `array of string`, `one of a, b`. */
function typeOf(s: JsonSchema): string {
	if (s.enum) return `one of ${s.enum.map((v) => JSON.stringify(v)).join(', ')}`;
	if (s.const !== undefined) return JSON.stringify(s.const);
	const alts = s.anyOf ?? s.oneOf;
	if (alts) return alts.map(typeOf).join(' | ');
	if (s.type === 'array') return `array of ${s.items ? typeOf(s.items) : 'anything'}`;
	if (Array.isArray(s.type)) return s.type.join(' | ');
	if (s.type === 'object' && !s.properties && s.additionalProperties && typeof s.additionalProperties === 'object') {
		return `map of ${typeOf(s.additionalProperties)}`;
	}
	return s.type ?? 'any JSON';
}

const ruleWords: [string, (v: unknown) => string][] = [
	['minLength', (v) => `at least ${v} characters`],
	['maxLength', (v) => `at most ${v} characters`],
	['minimum', (v) => `≥ ${v}`],
	['exclusiveMinimum', (v) => `> ${v}`],
	['maximum', (v) => (v === Number.MAX_SAFE_INTEGER ? '' : `≤ ${v}`)],
	['exclusiveMaximum', (v) => `< ${v}`],
	['minItems', (v) => `at least ${v} items`],
	['maxItems', (v) => `at most ${v} items`],
	['format', (v) => `format ${v}`],
	['pattern', (v) => `matches ${v}`],
	['default', (v) => `default ${JSON.stringify(v)}`],
	['description', (v) => String(v)]
];

function rulesOf(s: JsonSchema): string[] {
	const rules = ruleWords.flatMap(([key, say]) => (s[key] !== undefined ? [say(s[key])] : [])).filter(Boolean);
	// A UUID's pattern says nothing a reader needs beyond "format uuid".
	return s.format === 'uuid' ? rules.filter((r) => !r.startsWith('matches')) : rules;
}

/** The fields of an object schema as rows, nested objects (and arrays of objects) indented under their field. */
export function fieldRows(schema: JsonSchema, depth = 0, prefix = ''): FieldRow[] {
	const rows: FieldRow[] = [];
	for (const [name, s] of Object.entries(schema.properties ?? {})) {
		const inner = (s.anyOf ?? s.oneOf)?.find((a) => a.type !== 'null') ?? s;
		rows.push({
			name: prefix + name,
			type: typeOf(s),
			required: schema.required?.includes(name) ?? false,
			rules: rulesOf(inner),
			depth
		});
		const nested = inner.type === 'array' ? inner.items : inner;
		if (nested?.properties && depth < 3)
			rows.push(...fieldRows(nested, depth + 1, `${prefix}${name}${inner.type === 'array' ? '[]' : ''}.`));
	}
	return rows;
}

/** The document as the reference page shows it: operations grouped by tag, each with its fields in rows. */
export function describeOperations(doc: Doc): { name: string; operations: OperationView[] }[] {
	const byTag = new Map<string, OperationView[]>(doc.tags.map((t) => [t.name, []]));
	for (const [path, item] of Object.entries(doc.paths)) {
		for (const [method, raw] of Object.entries(item)) {
			const op = raw as {
				operationId: string;
				tags: string[];
				summary: string;
				'x-flotilla-access': { who: string };
				parameters?: { name: string; in: string; required: boolean; schema: JsonSchema }[];
				requestBody?: { description?: string; content: Record<string, { schema: JsonSchema; example?: unknown }> };
				responses: Record<string, { description: string; content?: Record<string, { schema: JsonSchema }> }>;
			};
			const [bodyType, body] = Object.entries(op.requestBody?.content ?? {})[0] ?? [];
			const view: OperationView = {
				id: op.operationId,
				method: method.toUpperCase(),
				path,
				summary: op.summary,
				who: op['x-flotilla-access'].who,
				params: (op.parameters ?? []).map((p) => ({
					name: `${p.name} (${p.in})`,
					type: typeOf(p.schema),
					required: p.required,
					rules: rulesOf(p.schema),
					depth: 0
				})),
				body: body && bodyType === 'application/json' ? fieldRows(body.schema) : null,
				bodyNote: body
					? bodyType === 'application/json'
						? body.schema.properties
							? null
							: typeOf(body.schema)
						: `${bodyType}: ${op.requestBody?.description ?? ''}`
					: null,
				example: body?.example !== undefined ? JSON.stringify(body.example, null, 2) : null,
				responses: Object.entries(op.responses).map(([status, r]) => {
					const [type, content] = Object.entries(r.content ?? {})[0] ?? [];
					const isError = content?.schema.$ref !== undefined;
					return {
						status,
						description: r.description,
						type: isError ? 'Error' : (type ?? null),
						fields: content && !isError ? fieldRows(content.schema) : []
					};
				})
			};
			byTag.get(op.tags[0]!)!.push(view);
		}
	}
	return [...byTag].map(([name, operations]) => ({ name, operations }));
}
