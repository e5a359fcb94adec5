/**
 * Splits a command line into words and operators the way a POSIX shell would for the simple commands the
 * console sends: single quotes are literal, double quotes allow \" and \\, a backslash escapes the next
 * character, and ; && || & | and redirections (`>` followed by its file as a word) are operators. Expansions other than the literal text
 * are not performed: the simulator only needs to read what the `sh` tag writes.
 */
export type Token = { word: string } | { op: string };

const OPERATORS = ['&&', '||', '2>&1', '2>/dev/null', '>/dev/null', '>&2', '>', ';', '&', '|', '\n'];

export function tokenize(line: string): Token[] {
	const tokens: Token[] = [];
	let word: string | null = null;
	let i = 0;
	const flush = () => {
		if (word !== null) tokens.push({ word });
		word = null;
	};
	while (i < line.length) {
		const c = line[i]!;
		// `2>…` is a redirection only where a word starts; `echo a2>x` is not one.
		const op = OPERATORS.find((o) => line.startsWith(o, i) && (word === null || !o.startsWith('2')));
		if (op) {
			flush();
			tokens.push({ op: op === '\n' ? ';' : op });
			i += op.length;
			continue;
		}
		if (c === ' ' || c === '\t') {
			flush();
			i++;
			continue;
		}
		word ??= '';
		if (c === "'") {
			const end = line.indexOf("'", i + 1);
			if (end < 0) throw new Error('unterminated single quote');
			word += line.slice(i + 1, end);
			i = end + 1;
		} else if (c === '"') {
			i++;
			while (i < line.length && line[i] !== '"') {
				if (line[i] === '\\' && ['"', '\\', '$', '`'].includes(line[i + 1] ?? '')) i++;
				word += line[i];
				i++;
			}
			if (i >= line.length) throw new Error('unterminated double quote');
			i++;
		} else if (c === '\\') {
			word += line[i + 1] ?? '';
			i += 2;
		} else {
			word += c;
			i++;
		}
	}
	flush();
	return tokens;
}
