import { z } from 'zod';
import { accessPolicy, type Method, type Rule } from '$lib/server/auth/access';
import { errorBodySchema } from '$lib/schemas/responses';
import { operations, type Operation } from './operations';

type JsonSchema = Record<string, unknown>;

/**
 * A zod schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect). Request bodies and queries are described as the
 * client sends them (`io: 'input'`: a default makes a field optional, `fromText`'s preprocess documents the number
 * it accepts); answers as the console writes them (`io: 'output'`). The one type JSON cannot carry, a Date read
 * from a query string, is documented as the ISO 8601 text it is parsed from; anything else unrepresentable throws,
 * so a new kind of schema cannot slip into the document as an empty `{}` unnoticed.
 */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
	const out = z.toJSONSchema(schema, {
		io,
		target: 'draft-2020-12',
		// Zod's own 'throw' fires before `override` can describe a Date; the override refuses the rest itself.
		unrepresentable: 'any',
		override: (ctx) => {
			const type = ctx.zodSchema._zod.def.type;
			if (type === 'date') Object.assign(ctx.jsonSchema, { type: 'string', format: 'date-time' });
			else if (unrepresentable.has(type))
				throw new Error(`A ${type} schema cannot be described in the OpenAPI document`);
		}
	}) as JsonSchema;
	delete out.$schema;
	return out;
}

const unrepresentable = new Set([
	'bigint',
	'symbol',
	'undefined',
	'void',
	'map',
	'set',
	'nan',
	'custom',
	'function',
	'promise',
	'transform'
]);

/** Who may call a route, in words, from the access table. */
export function whoMay(rule: Rule): string {
	if (rule.level === 'public') return 'anyone';
	if (rule.level === 'agent')
		return 'a pull agent, by its node’s signature or its one-time enrolment token (docs/pull-agent.md)';
	const who = { read: 'read', operate: 'operate', admin: 'admin' }[rule.level];
	return rule.session ? `a signed-in browser session (${who})` : `${who} scope or role`;
}

export function ruleOf(op: Pick<Operation, 'route' | 'method'>): Rule {
	const policy = accessPolicy[op.route];
	if (policy?.kind !== 'endpoint' || !policy.methods[op.method]) {
		throw new Error(`${op.method} ${op.route} is documented but not in the access table`);
	}
	return policy.methods[op.method]!;
}

/** `/api/nodes/[id]` → `/api/nodes/{id}`. */
export const openApiPath = (route: string) => route.replace(/\[(\w+)\]/g, '{$1}');

const errorAnswer = (description: string) => ({
	description,
	content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } }
});

function operationObject(op: Operation) {
	const rule = ruleOf(op);
	const params = [...op.route.matchAll(/\[(\w+)\]/g)].map(([, name]) => ({
		name: name!,
		in: 'path',
		required: true,
		schema: { type: 'string' }
	}));
	for (const [where, object] of [
		['query', op.query],
		['header', op.headers]
	] as const) {
		if (!object) continue;
		const q = jsonSchemaOf(object, 'input') as { properties?: Record<string, JsonSchema>; required?: string[] };
		for (const [name, schema] of Object.entries(q.properties ?? {})) {
			params.push({ name, in: where, required: q.required?.includes(name) ?? false, schema: schema as never });
		}
	}
	const responses: Record<string, unknown> = {};
	for (const [status, answer] of Object.entries(op.responses)) {
		if (status === '204') {
			responses[status] = { description: answer.description };
			continue;
		}
		const type = answer.contentType ?? 'application/json';
		if (!answer.schema && type === 'application/json') {
			// A JSON answer without its schema would be documented as a bare object that nothing checks.
			throw new Error(`${op.method} ${op.route} answers ${status} without a response schema`);
		}
		const schema = answer.schema ? jsonSchemaOf(answer.schema, 'output') : { type: 'string' };
		responses[status] = { description: answer.description, content: { [type]: { schema } } };
	}
	if (op.body || op.rawBody || op.query || op.headers || params.length)
		responses['400'] = errorAnswer('Bad input; the error’s fields name each refused field');
	if (rule.level === 'agent') {
		responses['401'] = errorAnswer('Not signed by an enrolled node’s agent, too old, or a replay');
	} else if (rule.level !== 'public') {
		responses['401'] = errorAnswer('Not signed in and no API token');
		responses['403'] = errorAnswer('The caller’s role or token scope does not reach this');
	}
	for (const [status, description] of Object.entries(op.refusals ?? {})) responses[status] = errorAnswer(description);
	if (params.length) responses['404'] = errorAnswer('No such thing');
	if (op.method !== 'GET') responses['409'] = errorAnswer('It conflicts with the current state');

	return {
		operationId: `${op.method.toLowerCase()}${op.route
			.replace(/^\/api/, '')
			.replace(/[[\]]/g, '')
			.replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase())}`,
		tags: [op.tag],
		summary: op.summary,
		'x-flotilla-access': {
			level: rule.level,
			session_only: 'session' in rule && !!rule.session,
			who: whoMay(rule)
		},
		security:
			rule.level === 'public' || rule.level === 'agent'
				? []
				: rule.session
					? [{ session: [] }]
					: [{ session: [] }, { token: [] }],
		...(params.length ? { parameters: params } : {}),
		...(op.body
			? {
					requestBody: {
						required: true,
						content: {
							'application/json': {
								schema: jsonSchemaOf(op.body, 'input'),
								...(op.example !== undefined ? { example: op.example } : {})
							}
						}
					}
				}
			: op.rawBody
				? {
						requestBody: {
							required: true,
							description: op.rawBody.description,
							content: { [op.rawBody.contentType]: { schema: { type: 'string' } } }
						}
					}
				: {}),
		responses
	};
}

/** The OpenAPI 3.1 document of the JSON API, built from the operations and the access table. */
export function openApiDocument(version: string) {
	const paths: Record<string, Partial<Record<Lowercase<Method>, unknown>>> = {};
	for (const op of operations) {
		const path = (paths[openApiPath(op.route)] ??= {});
		path[op.method.toLowerCase() as Lowercase<Method>] = operationObject(op);
	}
	const tags = [...new Set(operations.map((op) => op.tag))].map((name) => ({ name }));
	return {
		openapi: '3.1.0',
		info: {
			title: 'Flotilla API',
			version,
			description:
				'The console’s JSON API (docs/api.md). Send an API token as `Authorization: Bearer <token>`; its scope, capped by its owner’s role, decides what it may call. Errors answer `{"error": {"code", "message", "fields"}}`.'
		},
		tags,
		paths,
		components: {
			schemas: { Error: jsonSchemaOf(errorBodySchema, 'output') },
			securitySchemes: {
				token: { type: 'http', scheme: 'bearer', description: 'An API token (Settings → API tokens)' },
				session: { type: 'apiKey', in: 'cookie', name: 'flotilla_session', description: 'A browser session' }
			}
		}
	};
}
