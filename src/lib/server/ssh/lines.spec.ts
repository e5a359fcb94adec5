import { describe, expect, it } from 'vitest';
import { LineSplitter, TailBuffer } from './lines';

describe('LineSplitter', () => {
	it('emits complete lines, keeps partial ones, and never splits a character', () => {
		const lines: string[] = [];
		const s = new LineSplitter((l) => lines.push(l));
		const bytes = Buffer.from('first\r\nsecönd\nthi');
		s.push(bytes.subarray(0, 12)); // ends in the middle of "ö"
		s.push(bytes.subarray(12));
		expect(lines).toEqual(['first', 'secönd']);
		s.push(Buffer.from('rd'));
		s.end();
		expect(lines).toEqual(['first', 'secönd', 'third']);
	});

	it('cuts an endless line into bounded pieces', () => {
		const lines: string[] = [];
		const s = new LineSplitter((l) => lines.push(l), 10);
		s.push(Buffer.from('x'.repeat(25)));
		s.end();
		expect(lines).toEqual(['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(5)]);
	});
});

describe('TailBuffer', () => {
	it('keeps the end of the output and says it dropped the start', () => {
		const t = new TailBuffer(10);
		t.append('12345');
		expect(t.truncated).toBe(false);
		t.append('abcdef');
		expect(t.toString()).toBe('45\nabcdef\n');
		expect(t.truncated).toBe(true);
	});
});
