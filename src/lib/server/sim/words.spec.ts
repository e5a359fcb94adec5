import { describe, expect, it } from 'vitest';
import { hostileStrings } from '../../../../tests/fixtures/hostile-strings';
import { sh } from '../ssh/shell';
import { tokenize } from './words';

describe('the simulator tokenizer', () => {
	it('reads operators, quotes and escapes as a shell does', () => {
		expect(tokenize(`echo 'a b' "c \\"d\\"" e\\ f; true && false || x & y | z >&2 2>/dev/null`)).toEqual([
			{ word: 'echo' },
			{ word: 'a b' },
			{ word: 'c "d"' },
			{ word: 'e f' },
			{ op: ';' },
			{ word: 'true' },
			{ op: '&&' },
			{ word: 'false' },
			{ op: '||' },
			{ word: 'x' },
			{ op: '&' },
			{ word: 'y' },
			{ op: '|' },
			{ word: 'z' },
			{ op: '>&2' },
			{ op: '2>/dev/null' }
		]);
	});

	it('gets back exactly the value the sh tag quoted, for every hostile string', () => {
		for (const hostile of hostileStrings('/tmp/canary')) {
			expect(tokenize(sh`printf ${hostile}`.script)).toEqual([{ word: 'printf' }, { word: hostile }]);
		}
	});
});
