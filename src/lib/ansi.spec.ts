import { describe, expect, it } from 'vitest';
import { ansiToHtml, escapeHtml, parseAnsi } from './ansi';

describe('ansiToHtml', () => {
	it('escapes markup in output, coloured or not', () => {
		expect(escapeHtml(`<img src=x onerror="alert('1')">&`)).toBe(
			'&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;'
		);
		expect(ansiToHtml('<script>x</script>')).toBe('&lt;script&gt;x&lt;/script&gt;');
		expect(ansiToHtml('\x1b[31m<b>red</b>\x1b[0m')).toBe('<span class="text-red-400">&lt;b&gt;red&lt;/b&gt;</span>');
	});

	it('maps the 8 colours, their bright variants, bold and reset', () => {
		expect(parseAnsi('a\x1b[32mgreen\x1b[0m b')).toEqual([
			{ text: 'a' },
			{ text: 'green', fg: 'text-emerald-400' },
			{ text: ' b' }
		]);
		expect(parseAnsi('\x1b[1;91mbad\x1b[22m still red\x1b[39m plain')).toEqual([
			{ text: 'bad', fg: 'text-red-300', bold: true },
			{ text: ' still red', fg: 'text-red-300' },
			{ text: ' plain' }
		]);
		expect(parseAnsi('\x1b[1mbold\x1b[mreset')).toEqual([{ text: 'bold', bold: true }, { text: 'reset' }]);
		expect(ansiToHtml('\x1b[1;97mW')).toBe('<span class="text-white font-bold">W</span>');
	});

	it('drops other escape sequences, unknown codes and stray control characters', () => {
		expect(ansiToHtml('\x1b[2K\x1b[?25lprogress\x1b[38;5;200m 50%\x07')).toBe('progress 50%');
		expect(ansiToHtml('tab\tkept')).toBe('tab\tkept');
		expect(ansiToHtml('lone \x1b esc')).toBe('lone  esc');
		expect(ansiToHtml('')).toBe('');
	});
});
