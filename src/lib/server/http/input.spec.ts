import { describe, expect, it } from 'vitest';
import { entryProblems, inputProblems } from './input';

describe('inputProblems', () => {
	it('names a bare __proto__ key, which as a key of the answer would have vanished', () => {
		const body = JSON.parse('{"__proto__": {"admin": true}, "name": "x"}');
		expect(inputProblems(body)).toEqual({ _: '__proto__ is not allowed as a name' });
		expect(inputProblems(JSON.parse('{"scope": {"__proto__": 1}}'))).toEqual({
			'scope.__proto__': '__proto__ is not allowed as a name'
		});
	});

	it('refuses lone UTF-16 surrogates in values and names, which jsonb cannot store', () => {
		expect(inputProblems(JSON.parse('{"description": "a\\ud800b"}'))).toEqual({
			description: 'must be valid Unicode text (a lone surrogate such as \\ud800 is not)'
		});
		expect(Object.keys(inputProblems(JSON.parse('{"labels": {"\\udfff": "x"}}')))).toEqual(['labels']);
		expect(inputProblems({ ok: 'emoji 😀 and ü' })).toEqual({});
	});
});

describe('entryProblems', () => {
	it('refuses prototype keys as form and query names', () => {
		const query = new URLSearchParams('__proto__=1&constructor=2&prototype=3&q=fine');
		expect(entryProblems(query)).toEqual({
			_: '__proto__ is not allowed as a name',
			constructor: 'constructor is not allowed as a name',
			prototype: 'prototype is not allowed as a name'
		});
		expect(entryProblems(new URLSearchParams('q=a&limit=5'))).toEqual({});
	});
});
