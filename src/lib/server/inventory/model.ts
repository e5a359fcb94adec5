/**
 * What the INI and YAML parsers of an Ansible inventory both produce: hosts and groups with their
 * variables, each remembering the line it came from, so that every later complaint can name a line.
 */

/** A variable's value and the line that set it. */
export interface Sourced {
	value: unknown;
	line: number;
}

export interface InventoryHost {
	name: string;
	/** Where the host first appears. */
	line: number;
	vars: Map<string, Sourced>;
}

export interface InventoryGroup {
	name: string;
	/** Where the group is first declared or mentioned. */
	line: number;
	hosts: Set<string>;
	children: Set<string>;
	vars: Map<string, Sourced>;
}

/** A problem in the file, by line (1-based). `host` names the host it concerns, when one does. */
export interface InventoryIssue {
	line: number;
	host?: string;
	message: string;
}

export interface Inventory {
	hosts: Map<string, InventoryHost>;
	groups: Map<string, InventoryGroup>;
}

export interface ParsedInventory {
	inventory: Inventory;
	errors: InventoryIssue[];
	warnings: InventoryIssue[];
}

/** The most hosts one inventory may name, ranges expanded; a typo like `web[1:99999]` stops here. */
export const MAX_INVENTORY_HOSTS = 2000;

export class InventoryBuilder {
	readonly inventory: Inventory = { hosts: new Map(), groups: new Map() };
	readonly errors: InventoryIssue[] = [];
	readonly warnings: InventoryIssue[] = [];
	private tooMany = false;

	error(line: number, message: string, host?: string): void {
		this.errors.push(host ? { line, host, message } : { line, message });
	}

	warn(line: number, message: string, host?: string): void {
		this.warnings.push(host ? { line, host, message } : { line, message });
	}

	group(name: string, line: number): InventoryGroup {
		let g = this.inventory.groups.get(name);
		if (!g) {
			g = { name, line, hosts: new Set(), children: new Set(), vars: new Map() };
			this.inventory.groups.set(name, g);
		}
		return g;
	}

	/** Adds a host (again) to a group; a host named twice is one host whose variables merge, as in Ansible. */
	host(name: string, line: number, group: string): InventoryHost | null {
		let h = this.inventory.hosts.get(name);
		if (!h) {
			if (this.inventory.hosts.size >= MAX_INVENTORY_HOSTS) {
				if (!this.tooMany) this.error(line, `More than ${MAX_INVENTORY_HOSTS} hosts: import the inventory in parts`);
				this.tooMany = true;
				return null;
			}
			h = { name, line, vars: new Map() };
			this.inventory.hosts.set(name, h);
		}
		this.group(group, line).hosts.add(name);
		return h;
	}

	done(): ParsedInventory {
		const byLine = (a: InventoryIssue, b: InventoryIssue) => a.line - b.line;
		return { inventory: this.inventory, errors: this.errors.sort(byLine), warnings: this.warnings.sort(byLine) };
	}
}

/**
 * Expands Ansible's host ranges: `web[01:03]` is web01, web02, web03 (the width of the first bound is kept),
 * `db-[a:c]` is db-a, db-b, db-c, and `[1:9:2]` steps by two. Several ranges in one name multiply.
 * Throws a message for a malformed range.
 */
export function expandHostPattern(pattern: string, limit = MAX_INVENTORY_HOSTS): string[] {
	const m = /^(.*?)\[([^\]]*)\](.*)$/.exec(pattern);
	if (!m) {
		if (/[[\]]/.test(pattern)) throw new Error(`${pattern}: unbalanced [ ] in a host range`);
		return [pattern];
	}
	const [, head, range, tail] = m as unknown as [string, string, string, string];
	const parts = range.split(':');
	if (parts.length < 2 || parts.length > 3)
		throw new Error(`${pattern}: a host range is [start:end] or [start:end:step]`);
	const [start, end, stepText] = parts as [string, string, string | undefined];
	const step = stepText === undefined || stepText === '' ? 1 : Number(stepText);
	if (!Number.isInteger(step) || step < 1)
		throw new Error(`${pattern}: the step of a host range must be a positive whole number`);
	const values: string[] = [];
	if (/^\d+$/.test(start) && /^\d+$/.test(end)) {
		const [a, b] = [Number(start), Number(end)];
		if (a > b) throw new Error(`${pattern}: a host range must not run backwards`);
		if ((b - a) / step + 1 > limit) throw new Error(`${pattern}: more than ${limit} hosts in one range`);
		// Ansible pads to the width of the start bound when it has a leading zero: [01:10] → 01 … 10.
		const width = start.startsWith('0') ? start.length : 0;
		for (let i = a; i <= b; i += step) values.push(String(i).padStart(width, '0'));
	} else if (/^[a-z]$/i.test(start) && /^[a-z]$/i.test(end)) {
		const [a, b] = [start.charCodeAt(0), end.charCodeAt(0)];
		if (a > b) throw new Error(`${pattern}: a host range must not run backwards`);
		for (let i = a; i <= b; i += step) values.push(String.fromCharCode(i));
	} else {
		throw new Error(`${pattern}: a host range runs between two numbers or two letters`);
	}
	const out: string[] = [];
	for (const v of values) {
		for (const rest of expandHostPattern(tail, limit)) {
			out.push(`${head}${v}${rest}`);
			if (out.length > limit) throw new Error(`${pattern}: more than ${limit} hosts in one range`);
		}
	}
	return out;
}
