/**
 * Command output as HTML: SGR colours (30–37, 90–97), bold and reset become spans with classes; every other
 * escape sequence is dropped; all text is HTML-escaped first, so output from a node can never inject markup.
 */

const escapes: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
	return text.replace(/[&<>"']/g, (c) => escapes[c]!);
}

// The log pane is always dark (like a terminal), so one palette that reads on dark backgrounds.
const foreground: Record<number, string> = {
	30: 'text-slate-500',
	31: 'text-red-400',
	32: 'text-emerald-400',
	33: 'text-amber-300',
	34: 'text-sky-400',
	35: 'text-fuchsia-400',
	36: 'text-cyan-300',
	37: 'text-slate-200',
	90: 'text-slate-400',
	91: 'text-red-300',
	92: 'text-emerald-300',
	93: 'text-yellow-200',
	94: 'text-sky-300',
	95: 'text-fuchsia-300',
	96: 'text-cyan-200',
	97: 'text-white'
};

export interface AnsiSegment {
	text: string;
	/** Foreground class, if a colour is set. */
	fg?: string;
	bold?: boolean;
}

// CSI sequences (ESC [ params final-byte) and the two-byte escapes; anything else ESC starts is dropped.
// eslint-disable-next-line no-control-regex
const ESCAPE = /\x1b(?:\[([0-9;?]*)([@-~])|[@-Z\\-_])/g;

/** Splits a line into styled segments; the text is raw (not yet escaped). */
export function parseAnsi(line: string): AnsiSegment[] {
	const out: AnsiSegment[] = [];
	let fg: string | undefined;
	let bold = false;
	let at = 0;
	const push = (text: string) => {
		// Stray control characters (a lone ESC, BEL, backspace) are not output to show.
		// eslint-disable-next-line no-control-regex
		const clean = text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
		if (!clean) return;
		const last = out.at(-1);
		if (last && last.fg === fg && !!last.bold === bold) last.text += clean;
		else out.push({ text: clean, ...(fg ? { fg } : {}), ...(bold ? { bold } : {}) });
	};
	for (const m of line.matchAll(ESCAPE)) {
		push(line.slice(at, m.index));
		at = m.index + m[0].length;
		if (m[2] !== 'm' || m[1]?.startsWith('?')) continue; // cursor movement, erase line…: not styling
		const codes = (m[1] ?? '').split(';').map((c) => (c === '' ? 0 : Number(c)));
		for (const code of codes) {
			if (code === 0) {
				fg = undefined;
				bold = false;
			} else if (code === 1) bold = true;
			else if (code === 22) bold = false;
			else if (code === 39) fg = undefined;
			else if (foreground[code]) fg = foreground[code];
		}
	}
	push(line.slice(at));
	return out;
}

/** One line of output as safe HTML. */
export function ansiToHtml(line: string): string {
	return parseAnsi(line)
		.map((s) => {
			const cls = [s.fg, s.bold ? 'font-bold' : undefined].filter(Boolean).join(' ');
			return cls ? `<span class="${cls}">${escapeHtml(s.text)}</span>` : escapeHtml(s.text);
		})
		.join('');
}
