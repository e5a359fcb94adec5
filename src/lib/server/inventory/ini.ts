import { parseLiteral } from './literal';
import { expandHostPattern, InventoryBuilder, type ParsedInventory } from './model';

/**
 * Ansible's INI inventory format, as its `ini` inventory plugin reads it:
 *
 * - `[name]` lists hosts, `[name:vars]` sets group variables (`key=value`), `[name:children]` lists groups
 *   that belong to `name`. Hosts before the first section are `ungrouped`.
 * - A host line is a host name (or range, `web[01:03]`, or `name:port`) and then `key=value` variables,
 *   split like a shell would (quotes group words; an unquoted `#` starts a comment).
 * - Lines starting with `#` or `;` are comments.
 *
 * Every problem is collected with its line number rather than stopping at the first.
 */
export function parseIniInventory(text: string): ParsedInventory {
	const b = new InventoryBuilder();
	let section = { group: 'ungrouped', kind: 'hosts' as 'hosts' | 'vars' | 'children' };
	const lines = text.split(/\r?\n/);
	lines.forEach((raw, index) => {
		const line = index + 1;
		const trimmed = raw.trim();
		if (!trimmed || trimmed.startsWith('#') || trimmed.startsWith(';')) return;

		if (trimmed.startsWith('[')) {
			const header = /^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?$/.exec(trimmed);
			if (header) {
				const kind = header[2] ?? 'hosts';
				if (kind !== 'hosts' && kind !== 'vars' && kind !== 'children') {
					b.error(line, `[${header[1]}:${kind}]: a section is [group], [group:vars] or [group:children]`);
					// The lines under an unknown section are not read as hosts of some other group.
					section = { group: '', kind: 'hosts' };
					return;
				}
				section = { group: header[1]!, kind };
				b.group(section.group, line);
				return;
			}
			// Ansible refuses these too (a host pattern cannot start with a range).
			b.error(line, `Not a section header: ${trimmed} (a group name has no spaces, : or ])`);
			section = { group: '', kind: 'hosts' };
			return;
		}
		if (!section.group) return;

		if (section.kind === 'vars') {
			const eq = trimmed.indexOf('=');
			if (eq <= 0) {
				b.error(line, `Expected key=value in [${section.group}:vars], got: ${trimmed}`);
				return;
			}
			const key = trimmed.slice(0, eq).trim();
			b.group(section.group, line).vars.set(key, { value: parseLiteral(trimmed.slice(eq + 1).trim()), line });
			return;
		}

		if (section.kind === 'children') {
			const child = /^([^:\]\s]+)\s*(?:[#;].*)?$/.exec(trimmed);
			if (!child) {
				b.error(line, `Not a group name in [${section.group}:children]: ${trimmed}`);
				return;
			}
			if (child[1] === section.group) {
				b.error(line, `${child[1]} cannot be a child of itself`);
				return;
			}
			b.group(section.group, line).children.add(child[1]!);
			b.group(child[1]!, line);
			return;
		}

		let tokens: string[];
		try {
			tokens = shellWords(raw);
		} catch (err) {
			b.error(line, (err as Error).message);
			return;
		}
		if (!tokens.length) return;
		const [pattern, ...assignments] = tokens as [string, ...string[]];
		const vars: [string, unknown][] = [];
		for (const t of assignments) {
			const eq = t.indexOf('=');
			if (eq <= 0) {
				b.error(line, `Expected key=value after the host name, got: ${t}`, pattern);
				return;
			}
			vars.push([t.slice(0, eq), parseLiteral(t.slice(eq + 1))]);
		}
		// `name:port` (one colon, digits after it) as Ansible reads it; IPv6 addresses have several colons.
		const withPort = /^([^:]+):(\d+)$/.exec(pattern);
		const names = withPort ? withPort[1]! : pattern;
		if (withPort) vars.unshift(['ansible_port', Number(withPort[2])]);
		let expanded: string[];
		try {
			expanded = expandHostPattern(names);
		} catch (err) {
			b.error(line, (err as Error).message, pattern);
			return;
		}
		for (const name of expanded) {
			const host = b.host(name, line, section.group);
			if (!host) return;
			for (const [k, v] of vars) host.vars.set(k, { value: v, line });
		}
	});
	return b.done();
}

/**
 * Splits a host line into words as POSIX shell quoting (Python's shlex, which Ansible uses) does:
 * whitespace separates words, '…' is literal, "…" allows \-escapes of \ " $ `, a backslash escapes the
 * next character, and an unquoted # ends the line.
 */
export function shellWords(line: string): string[] {
	const words: string[] = [];
	let word = '';
	let inWord = false;
	for (let i = 0; i < line.length; i++) {
		const c = line[i]!;
		if (/\s/.test(c)) {
			if (inWord) words.push(word);
			word = '';
			inWord = false;
		} else if (c === '#') {
			break;
		} else if (c === "'") {
			const end = line.indexOf("'", i + 1);
			if (end < 0) throw new Error("No closing quotation (an unmatched ')");
			word += line.slice(i + 1, end);
			i = end;
			inWord = true;
		} else if (c === '"') {
			let j = i + 1;
			for (; j < line.length && line[j] !== '"'; j++) {
				if (line[j] === '\\' && '\\"$`'.includes(line[j + 1] ?? '')) j++;
				word += line[j];
			}
			if (j >= line.length) throw new Error('No closing quotation (an unmatched ")');
			i = j;
			inWord = true;
		} else if (c === '\\') {
			if (i + 1 >= line.length) throw new Error('No escaped character (a \\ at the end of the line)');
			word += line[++i];
			inWord = true;
		} else {
			word += c;
			inWord = true;
		}
	}
	if (inWord) words.push(word);
	return words;
}
