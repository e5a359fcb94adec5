/**
 * The values of an INI inventory, read as Ansible reads them: Ansible passes each through Python's
 * `ast.literal_eval` and keeps the plain string when that fails. This reads the same small language
 * (quoted strings, numbers, True/False/None, lists, tuples and dicts of them); anything else, or anything
 * with text left over, stays the string it was.
 */
export function parseLiteral(text: string): unknown {
	const p = new LiteralParser(text);
	try {
		const value = p.value();
		p.space();
		return p.atEnd() ? value : text;
	} catch {
		return text;
	}
}

class LiteralParser {
	private i = 0;
	constructor(private readonly s: string) {}

	atEnd(): boolean {
		return this.i >= this.s.length;
	}

	space(): void {
		while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
	}

	private fail(): never {
		throw new Error('not a literal');
	}

	value(): unknown {
		this.space();
		const c = this.s[this.i];
		if (c === "'" || c === '"') return this.string(c);
		if (c === '[') return this.sequence(']');
		if (c === '(') return this.sequence(')');
		if (c === '{') return this.dict();
		const word = /^(?:True|False|None)\b/.exec(this.s.slice(this.i));
		if (word) {
			this.i += word[0].length;
			return word[0] === 'True' ? true : word[0] === 'False' ? false : null;
		}
		const num = /^[-+]?(?:\d[\d_]*(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)/.exec(this.s.slice(this.i));
		if (num) {
			this.i += num[0].length;
			const n = Number(num[0].replaceAll('_', ''));
			if (Number.isNaN(n)) this.fail();
			return n;
		}
		return this.fail();
	}

	private string(quote: string): string {
		this.i++;
		let out = '';
		while (this.i < this.s.length) {
			const c = this.s[this.i++]!;
			if (c === quote) return out;
			if (c === '\\') {
				const n = this.s[this.i++];
				if (n === undefined) this.fail();
				out += ({ n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"' } as Record<string, string>)[n] ?? `\\${n}`;
			} else out += c;
		}
		return this.fail();
	}

	private sequence(close: string): unknown[] {
		this.i++;
		const out: unknown[] = [];
		for (;;) {
			this.space();
			if (this.s[this.i] === close) {
				this.i++;
				return out;
			}
			out.push(this.value());
			this.space();
			if (this.s[this.i] === ',') this.i++;
			else if (this.s[this.i] !== close) this.fail();
		}
	}

	private dict(): Record<string, unknown> {
		this.i++;
		const out: Record<string, unknown> = {};
		for (;;) {
			this.space();
			if (this.s[this.i] === '}') {
				this.i++;
				return out;
			}
			const key = this.value();
			this.space();
			if (this.s[this.i++] !== ':') this.fail();
			out[String(key)] = this.value();
			this.space();
			if (this.s[this.i] === ',') this.i++;
			else if (this.s[this.i] !== '}') this.fail();
		}
	}
}
