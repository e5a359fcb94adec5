import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { accessPolicy } from '$lib/server/auth/access';
import { z } from 'zod';
import { auditQuerySchema } from '$lib/schemas/audit';
import { jsonSchemaOf, openApiDocument, openApiPath } from './document';
import { operations } from './operations';

const doc = openApiDocument('0.0.0-test');

/** Every API operation the access table admits, as `METHOD /path/{param}`. */
function apiOperationsInAccessTable(): string[] {
	const out: string[] = [];
	for (const [route, policy] of Object.entries(accessPolicy)) {
		if (!route.startsWith('/api/') || policy.kind !== 'endpoint') continue;
		for (const method of Object.keys(policy.methods)) out.push(`${method} ${openApiPath(route)}`);
	}
	return out.sort();
}

function operationsInDocument(): string[] {
	return Object.entries(doc.paths)
		.flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`))
		.sort();
}

type Schema = Record<string, unknown>;

/**
 * Where a response schema says only "an object" (no properties, no value schema): an answer nothing checks.
 * `{}` is allowed below the top (a run's `scope`, described in words), never as the answer itself.
 */
function bareObjects(schema: Schema, at = '$'): string[] {
	const out: string[] = [];
	if (at === '$' && Object.keys(schema).filter((k) => k !== 'description').length === 0) out.push(at);
	const some = (v: unknown) => !!v && typeof v === 'object' && Object.keys(v).length > 0;
	// A map (`z.record`) says what its keys are; a loose object with no properties says nothing.
	const describes =
		some(schema.properties) ||
		some(schema.patternProperties) ||
		'propertyNames' in schema ||
		schema.additionalProperties === false ||
		some(schema.additionalProperties);
	if (schema.type === 'object' && !describes) out.push(at);
	for (const [key, value] of Object.entries(schema)) {
		if (key === 'properties' && value && typeof value === 'object') {
			for (const [name, sub] of Object.entries(value)) out.push(...bareObjects(sub as Schema, `${at}.${name}`));
		} else if (Array.isArray(value)) {
			value.forEach((sub, i) => sub && typeof sub === 'object' && out.push(...bareObjects(sub, `${at}.${key}[${i}]`)));
		} else if (value && typeof value === 'object' && key !== 'properties') {
			out.push(...bareObjects(value as Schema, `${at}.${key}`));
		}
	}
	return out;
}

/** Every 2xx answer of the document with a JSON body: `METHOD path status` and its schema. */
function jsonAnswers(document: typeof doc) {
	return Object.entries(document.paths).flatMap(([path, item]) =>
		Object.entries(item).flatMap(([method, op]) =>
			Object.entries((op as { responses: Record<string, { content?: Record<string, { schema: Schema }> }> }).responses)
				.filter(([status]) => /^2\d\d$/.test(status))
				.flatMap(([status, answer]) => {
					const json = answer.content?.['application/json'];
					return json ? [{ where: `${method.toUpperCase()} ${path} ${status}`, schema: json.schema }] : [];
				})
		)
	);
}

function oasValidator() {
	const ajv = new Ajv2020({ strict: false, allErrors: true });
	for (const f of ['uri', 'uri-reference', 'media-range', 'email']) ajv.addFormat(f, true);
	// `$dynamicRef: "#meta"` is there so the schema-validating variant (schema-base) can put its dialect in; in
	// this schema it resolves to `#/$defs/schema`, which ajv follows only as a plain `$ref`.
	const text = readFileSync('tests/fixtures/openapi/oas-3.1-schema-2022-10-07.json', 'utf8');
	return ajv.compile(JSON.parse(text.replaceAll('"$dynamicRef": "#meta"', '"$ref": "#/$defs/schema"')));
}

describe('the OpenAPI document', () => {
	// The access table is proved to match src/routes by access.spec.ts; this proves the document matches it.
	it('lists exactly the API operations of the access table', () => {
		expect(operationsInDocument()).toEqual(apiOperationsInAccessTable());
	});

	it('validates against the official OpenAPI 3.1 schema', () => {
		const validate = oasValidator();
		const valid = validate(doc);
		expect(validate.errors ?? []).toEqual([]);
		expect(valid).toBe(true);
	});

	it('and that schema refuses a broken document (the check is not vacuous)', () => {
		const validate = oasValidator();
		const broken = structuredClone(doc) as { paths: Record<string, Record<string, { responses: unknown }>> };
		broken.paths['/api/version']!.get!.responses = { 200: { content: {} } };
		expect(validate(broken)).toBe(false);
		expect(validate({ ...doc, openapi: '3.0.3' })).toBe(false);
	});

	it('says who may call each operation, as the access table does', () => {
		const nodes = doc.paths['/api/nodes']!;
		expect((nodes.get as { 'x-flotilla-access': { level: string } })['x-flotilla-access'].level).toBe('read');
		expect((nodes.post as { 'x-flotilla-access': { level: string } })['x-flotilla-access'].level).toBe('admin');
	});

	it('describes request bodies as clients send them: a field with a default is optional', () => {
		const body = (
			doc.paths['/api/nodes']!.post as { requestBody: { content: Record<string, { schema: { required: string[] } }> } }
		).requestBody.content['application/json']!.schema;
		expect(body.required).toEqual(expect.arrayContaining(['name', 'host', 'credential_id']));
		expect(body.required).not.toContain('port');
		expect(body.required).not.toContain('policy');
	});

	it('handles what JSON Schema cannot say deliberately: a date read from text is its ISO text, anything else throws', () => {
		const audit = jsonSchemaOf(auditQuerySchema, 'input') as { properties: Record<string, unknown> };
		expect(audit.properties.since).toMatchObject({ type: 'string', format: 'date-time' });
		expect(() => jsonSchemaOf(z.object({ n: z.bigint() }), 'input')).toThrow(/bigint/);
		expect(() =>
			jsonSchemaOf(
				z.string().transform((v) => v.length),
				'output'
			)
		).toThrow(/transform/);
	});

	it('gives every 2xx JSON answer a real schema: no answer, and nothing in one, is a bare object', () => {
		const answers = jsonAnswers(doc);
		expect(answers.length).toBeGreaterThan(80);
		const bare = answers.flatMap(({ where, schema }) => bareObjects(schema).map((at) => `${where} ${at}`));
		expect(bare).toEqual([]);
	});

	it('and that check catches a bare object, at the top or nested (it is not vacuous)', () => {
		expect(bareObjects({ type: 'object' })).toEqual(['$']);
		expect(bareObjects({})).toEqual(['$']);
		expect(bareObjects(jsonSchemaOf(z.object({ a: z.object({}).loose() }), 'output'))).toEqual(['$.a']);
		expect(
			bareObjects({ type: 'object', properties: { a: { type: 'array', items: { type: 'object' } }, b: {} } })
		).toEqual(['$.a.items']);
		expect(bareObjects(jsonSchemaOf(z.object({ tasks: z.array(z.record(z.string(), z.int())) }), 'output'))).toEqual(
			[]
		);
	});

	it('refuses to document a JSON answer without its schema', () => {
		operations.push({
			method: 'GET',
			route: '/api/version',
			tag: 'Meta',
			summary: 'an answer without a schema',
			responses: { 200: { description: 'Something' } }
		});
		try {
			expect(() => openApiDocument('0.0.0-test')).toThrow(/GET \/api\/version answers 200 without a response schema/);
		} finally {
			operations.pop();
		}
	});

	it('documents the event streams’ query and headers, and their 400', () => {
		for (const path of ['/api/events', '/api/runs/{id}/events']) {
			const op = doc.paths[path]!.get as {
				parameters: { name: string; in: string; required: boolean; schema: Schema }[];
				responses: Record<string, unknown>;
			};
			const named = Object.fromEntries(op.parameters.map((p) => [`${p.in} ${p.name}`, p]));
			expect(named['query after']).toMatchObject({ required: false, schema: { type: 'integer', minimum: 0 } });
			expect(named['query types']).toMatchObject({ required: false, schema: { type: 'string' } });
			expect(named['header Last-Event-ID']).toMatchObject({ required: false, schema: { type: 'integer' } });
			expect(op.responses['400']).toBeDefined();
		}
	});
});
