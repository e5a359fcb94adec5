import { describe, expect, it } from 'vitest';
import { lineMatches } from './log-line';

describe('lineMatches (the run page log search)', () => {
	it('finds text case-insensitively', () => {
		expect(lineMatches({ s: 'out', t: 'Fetching origin/main' }, 'ORIGIN')).toBe(true);
		expect(lineMatches({ s: 'out', t: 'Fetching origin/main' }, 'upstream')).toBe(false);
	});

	it('searches the text as shown: colour codes neither match nor split a word', () => {
		const coloured = { s: 'out', t: '\x1b[32mhealth\x1b[0m \x1b[1mok\x1b[22m' };
		expect(lineMatches(coloured, 'health ok')).toBe(true);
		expect(lineMatches(coloured, '[32m')).toBe(false);
	});
});
