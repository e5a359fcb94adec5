import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { accessPolicy } from '$lib/server/auth/access';
import { z } from 'zod';
import { auditQuerySchema } from '$lib/schemas/audit';
import { jsonSchemaOf, openApiDocument, openApiPath } from './document';

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
});
