import { isAlias, isMap, isScalar, LineCounter, parseDocument, type Document, type Node, type YAMLMap } from 'yaml';
import { expandHostPattern, InventoryBuilder, type ParsedInventory } from './model';

/**
 * Ansible's YAML inventory format, as its `yaml` inventory plugin reads it: top-level keys are groups
 * (usually just `all`); a group is a mapping of `hosts` (host name → its variables), `vars` and `children`
 * (group name → group). YAML 1.1, as Ansible's parser speaks it (`yes`/`no` are booleans). Line numbers
 * come from the YAML library's source positions.
 */
export function parseYamlInventory(text: string): ParsedInventory {
	try {
		return readYamlInventory(text);
	} catch (err) {
		// The YAML library refuses what would exhaust it (an alias bomb: "Excessive alias count"), by throwing.
		const b = new InventoryBuilder();
		b.error(1, `YAML: ${(err as Error).message}`);
		return b.done();
	}
}

function readYamlInventory(text: string): ParsedInventory {
	const b = new InventoryBuilder();
	const lines = new LineCounter();
	const doc = parseDocument(text, { lineCounter: lines, version: '1.1', merge: true, prettyErrors: false });
	const lineAt = (offset: number | undefined) => (offset === undefined ? 1 : lines.linePos(offset).line);
	const lineOf = (node: unknown) => lineAt((node as Node | null)?.range?.[0]);

	// The library places some errors (a duplicate key after an empty value) at the end of the line before;
	// what they are about starts at the next character that is not blank.
	const errorLine = (offset: number) => {
		let at = offset;
		while (at < text.length && /\s/.test(text[at]!)) at++;
		return lineAt(at < text.length ? at : offset);
	};
	for (const e of doc.errors) b.error(errorLine(e.pos[0]), `YAML: ${e.message}`);
	if (doc.errors.length) return b.done();
	for (const w of doc.warnings) b.warn(lineAt(w.pos[0]), `YAML: ${w.message}`);

	const root = resolve(doc, doc.contents);
	if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) {
		b.error(1, 'The inventory is empty');
		return b.done();
	}
	if (!isMap(root)) {
		b.error(lineOf(root), 'An inventory is a mapping of groups, usually starting with all:');
		return b.done();
	}

	const readGroup = (name: string, node: unknown, line: number, depth: number) => {
		const group = b.group(name, line);
		const value = resolve(doc, node);
		if (value === null || (isScalar(value) && value.value === null)) return;
		if (!isMap(value)) {
			b.error(lineOf(value) || line, `Group ${name}: expected a mapping with hosts, vars or children`);
			return;
		}
		// Only aliases can nest a group in itself; such a file would otherwise recurse for ever.
		if (depth > 50) {
			b.error(line, `Group ${name}: groups are nested more than 50 deep (an alias of a group inside itself?)`);
			return;
		}
		for (const pair of (value as YAMLMap).items) {
			const key = keyText(pair.key);
			const keyLine = lineOf(pair.key);
			const v = resolve(doc, pair.value);
			const empty = v === null || (isScalar(v) && v.value === null);
			if (key === 'hosts') {
				if (empty) continue;
				if (!isMap(v)) {
					b.error(lineOf(v), `Group ${name}: hosts is a mapping of host names (host: or host: {vars}), not a list`);
					continue;
				}
				for (const h of (v as YAMLMap).items) readHost(name, h.key, h.value);
			} else if (key === 'vars') {
				if (empty) continue;
				if (!isMap(v)) {
					b.error(lineOf(v), `Group ${name}: vars is a mapping of variable names to values`);
					continue;
				}
				for (const item of (v as YAMLMap).items) {
					group.vars.set(keyText(item.key), { value: toJs(doc, item.value), line: lineOf(item.key) });
				}
			} else if (key === 'children') {
				if (empty) continue;
				if (!isMap(v)) {
					b.error(lineOf(v), `Group ${name}: children is a mapping of group names`);
					continue;
				}
				for (const c of (v as YAMLMap).items) {
					const child = keyText(c.key);
					const childLine = lineOf(c.key);
					if (child === name || child === 'all') {
						b.error(childLine, `${child} cannot be a child of ${name}`);
						continue;
					}
					group.children.add(child);
					readGroup(child, c.value, childLine, depth + 1);
				}
			} else {
				// Ansible warns about these and carries on; so does this.
				b.warn(keyLine, `Group ${name}: ignored the key ${key} (a group has hosts, vars and children)`);
			}
		}
	};

	const readHost = (group: string, keyNode: unknown, valueNode: unknown) => {
		const pattern = keyText(keyNode);
		const line = lineOf(keyNode);
		const value = resolve(doc, valueNode);
		const empty = value === null || (isScalar(value) && value.value === null);
		if (!empty && !isMap(value)) {
			b.error(lineOf(value), `Host ${pattern}: its variables are a mapping (name: value)`, pattern);
			return;
		}
		let names: string[];
		try {
			names = expandHostPattern(pattern);
		} catch (err) {
			b.error(line, (err as Error).message, pattern);
			return;
		}
		const vars = empty
			? []
			: (value as YAMLMap).items.map((item) => [keyText(item.key), toJs(doc, item.value), lineOf(item.key)] as const);
		for (const name of names) {
			const host = b.host(name, line, group);
			if (!host) return;
			for (const [k, v, l] of vars) host.vars.set(k, { value: v, line: l });
		}
	};

	for (const pair of (root as YAMLMap).items) readGroup(keyText(pair.key), pair.value, lineOf(pair.key), 0);
	return b.done();
}

function resolve(doc: Document, node: unknown): unknown {
	return isAlias(node) ? (node.resolve(doc) ?? null) : (node ?? null);
}

function toJs(doc: Document, node: unknown): unknown {
	const n = resolve(doc, node);
	return n && typeof (n as Node).toJS === 'function' ? (n as Node).toJS(doc) : n;
}

function keyText(node: unknown): string {
	if (isScalar(node)) return String(node.value ?? '');
	return String(node ?? '');
}
