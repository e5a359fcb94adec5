import type { z } from 'zod';
import { createNodeSchema, roleNameSchema } from '$lib/schemas/nodes';
import type { InventoryHost, InventoryIssue, ParsedInventory, Sourced } from './model';

export type NodeInput = z.infer<typeof createNodeSchema>;

/** Which groups become roles: every group (but `all` and `ungrouped`), none, or the ones named. */
export type RoleGroups = 'all' | 'none' | string[];

export interface PlannedNode {
	/** The line the host first appears on. */
	line: number;
	/** Exactly what `POST /api/nodes` would be given, already checked by the same schema. */
	input: NodeInput;
}

export interface InventoryPlan {
	nodes: PlannedNode[];
	errors: InventoryIssue[];
	warnings: InventoryIssue[];
}

/** Groups every inventory has; a host is in them by being in the inventory, so they say nothing about its role. */
const implicitGroups = new Set(['all', 'ungrouped']);

/** Variables that decide how the console reaches or treats a node; the first one set wins (Ansible's aliases). */
const fieldVars = {
	host: ['ansible_host', 'ansible_ssh_host'],
	port: ['ansible_port', 'ansible_ssh_port'],
	user: ['ansible_user', 'ansible_ssh_user'],
	kind: ['flotilla_kind'],
	policy: ['flotilla_policy'],
	control_plane: ['flotilla_control_plane'],
	host_key_fingerprint: ['flotilla_host_key_fingerprint']
} as const;

const flotillaVars = new Set([
	'flotilla_roles',
	'flotilla_labels',
	'flotilla_kind',
	'flotilla_policy',
	'flotilla_control_plane',
	'flotilla_host_key_fingerprint'
]);

/** Ansible settings the console cannot honour; said once per line so that nobody assumes they took effect. */
const ignoredVars: [RegExp, string][] = [
	[/^ansible(_ssh)?_private_key_file$/, 'every imported node signs in with the credential chosen for the import'],
	[/^ansible(_ssh)?_pass(word)?$/, 'the console signs in with SSH keys only; remove the password from the file'],
	[/^ansible_ssh_(common|extra)_args$|^ansible_ssh_args$/, 'the console has its own SSH settings'],
	[/^ansible_become/, 'the console runs its commands as the node’s user'],
	[/^ansible_(ssh_)?host_key_checking$/, 'host keys are always checked: pinned, or accepted by an admin']
];

/**
 * Turns a parsed inventory into the nodes it describes, each validated exactly as `POST /api/nodes`
 * validates one, with every problem tied to the line that caused it:
 *
 * - name: the inventory host name; host, port, user: `ansible_host`, `ansible_port`, `ansible_user`
 *   (the host name, 22 and root when unset);
 * - roles: the groups the host is in, directly or through `children` (per `roleGroups`), plus
 *   `flotilla_roles`; labels: `flotilla_labels`; `flotilla_kind`, `flotilla_policy`, `flotilla_control_plane`
 *   and `flotilla_host_key_fingerprint` set the rest.
 *
 * Variables resolve as in Ansible: `all`, then groups from the outermost to the innermost (by name among
 * equals), then the host; the last one set wins. Labels merge key by key in that same order.
 */
export function planInventory(
	parsed: ParsedInventory,
	options: { credentialId: string; roleGroups: RoleGroups }
): InventoryPlan {
	const { hosts, groups } = parsed.inventory;
	const errors = [...parsed.errors];
	const warnings = [...parsed.warnings];
	const warned = new Set<string>();
	const warnOnce = (line: number, message: string) => {
		if (warned.has(`${line}\n${message}`)) return;
		warned.add(`${line}\n${message}`);
		warnings.push({ line, message });
	};

	// Parents of each group, and its depth below `all` (the longest way down, as Ansible counts it).
	const parents = new Map<string, Set<string>>();
	for (const g of groups.values()) {
		for (const c of g.children) {
			if (!parents.has(c)) parents.set(c, new Set());
			parents.get(c)!.add(g.name);
		}
	}
	const depth = new Map<string, number>();
	const inCycle = new Set<string>();
	const depthOf = (name: string, trail: string[] = []): number => {
		if (name === 'all') return 0;
		const known = depth.get(name);
		if (known !== undefined) return known;
		if (trail.includes(name)) {
			const cycle = [...trail.slice(trail.indexOf(name)), name];
			if (!cycle.some((g) => inCycle.has(g))) {
				errors.push({
					line: groups.get(name)?.line ?? 1,
					message: `Groups contain each other: ${cycle.join(' → ')}`
				});
			}
			for (const g of cycle) inCycle.add(g);
			return 1;
		}
		const ps = [...(parents.get(name) ?? [])].filter((p) => p !== 'all');
		const d = 1 + Math.max(0, ...ps.map((p) => depthOf(p, [...trail, name])));
		depth.set(name, d);
		return d;
	};
	for (const name of groups.keys()) depthOf(name);

	const ancestors = (name: string, into: Set<string>) => {
		if (into.has(name)) return;
		into.add(name);
		for (const p of parents.get(name) ?? []) ancestors(p, into);
	};

	// Which groups are roles, each group's name checked once (not once per host in it).
	const roleGroupOk = new Map<string, boolean>();
	const isRoleGroup = (name: string): boolean => {
		if (implicitGroups.has(name)) return false;
		if (options.roleGroups === 'none') return false;
		if (options.roleGroups !== 'all' && !options.roleGroups.includes(name)) return false;
		let ok = roleGroupOk.get(name);
		if (ok === undefined) {
			const check = roleNameSchema.safeParse(name);
			ok = check.success;
			roleGroupOk.set(name, ok);
			if (!check.success) {
				errors.push({
					line: groups.get(name)?.line ?? 1,
					message: `Group ${name} cannot be a role: role names ${check.error.issues[0]!.message}. Rename the group, or leave it out of the groups that are roles`
				});
			}
		}
		return ok;
	};

	const nodes: PlannedNode[] = [];
	for (const host of hosts.values()) {
		const memberOf = new Set<string>(['all']);
		for (const g of groups.values()) if (g.hosts.has(host.name)) ancestors(g.name, memberOf);

		// Resolution order: all < outer groups < inner groups < the host itself.
		const ordered = [...memberOf].sort((a, b) => depthOf(a) - depthOf(b) || (a === b ? 0 : a < b ? -1 : 1));
		const layers: Map<string, Sourced>[] = [
			...ordered.map((g) => groups.get(g)?.vars ?? new Map<string, Sourced>()),
			host.vars
		];
		const vars = new Map<string, Sourced>();
		const labelLayers: Sourced[] = [];
		for (const layer of layers) {
			for (const [k, v] of layer) {
				vars.set(k, v);
				if (k === 'flotilla_labels') labelLayers.push(v);
			}
		}
		for (const [k, v] of vars) {
			for (const [pattern, why] of ignoredVars) {
				if (pattern.test(k)) warnOnce(v.line, `${k} is ignored: ${why}`);
			}
			if (k.startsWith('flotilla_') && !flotillaVars.has(k)) {
				warnOnce(v.line, `${k} is not a variable the console knows (${[...flotillaVars].join(', ')})`);
			}
			if (k === 'ansible_connection' && !['ssh', 'paramiko', 'smart'].includes(String(v.value))) {
				warnOnce(v.line, `ansible_connection=${String(v.value)}: the console reaches every node over SSH`);
			}
		}

		const planned = planHost(host, vars, labelLayers, [...memberOf].filter(isRoleGroup).sort(), options.credentialId);
		if ('errors' in planned) errors.push(...planned.errors);
		else nodes.push(planned);
	}

	const byLine = (a: InventoryIssue, b: InventoryIssue) => a.line - b.line;
	return { nodes, errors: errors.sort(byLine), warnings: warnings.sort(byLine) };
}

function planHost(
	host: InventoryHost,
	vars: Map<string, Sourced>,
	labelLayers: Sourced[],
	groupRoles: string[],
	credentialId: string
): PlannedNode | { errors: InventoryIssue[] } {
	const errors: InventoryIssue[] = [];
	const fail = (line: number, message: string) => errors.push({ line, host: host.name, message });
	// Where each field came from, so that a refusal names the variable and the line that set it.
	const source: Record<string, { name: string; line: number }> = { name: { name: 'the host name', line: host.line } };
	const pick = (field: keyof typeof fieldVars): unknown => {
		for (const name of fieldVars[field]) {
			const v = vars.get(name);
			if (v) {
				source[field] = { name, line: v.line };
				return v.value;
			}
		}
		return undefined;
	};

	const roles = [...groupRoles];
	const rolesVar = vars.get('flotilla_roles');
	if (rolesVar) {
		source.roles = { name: 'flotilla_roles', line: rolesVar.line };
		const list = listOf(rolesVar.value);
		if (!list)
			fail(rolesVar.line, 'flotilla_roles: must be a list of role names, or one string of them separated by commas');
		else roles.push(...list);
	}

	const labels: Record<string, string> = {};
	for (const layer of labelLayers) {
		source.labels = { name: 'flotilla_labels', line: layer.line };
		const map = labelsOf(layer.value);
		if (!map)
			fail(layer.line, 'flotilla_labels: must be a mapping of names to values, or one string "name=value, name=value"');
		else Object.assign(labels, map);
	}

	const hostValue = pick('host');
	const input = {
		name: host.name,
		// Ansible connects to the inventory name when ansible_host is not set; so does the console.
		host: hostValue === undefined ? host.name : scalarText(hostValue),
		port: scalar(pick('port')),
		user: scalar(pick('user')),
		credential_id: credentialId,
		kind: scalar(pick('kind')),
		roles: [...new Set(roles)],
		labels,
		policy: scalar(pick('policy')),
		control_plane: booleanOf(pick('control_plane')),
		host_key_fingerprint: scalar(pick('host_key_fingerprint'))
	};
	if (errors.length) return { errors };

	const parsed = createNodeSchema.safeParse(input);
	if (parsed.success) return { line: host.line, input: parsed.data };
	const seen = new Set<string>();
	for (const issue of parsed.error.issues) {
		const field = String(issue.path[0] ?? 'name');
		if (seen.has(field)) continue;
		seen.add(field);
		const from = source[field] ?? source.name!;
		const what =
			field === 'roles' && issue.path.length > 1
				? `role ${String(input.roles[Number(issue.path[1])])}`
				: field === 'host' && !source.host
					? 'ansible_host is not set, and the host name'
					: from.name;
		fail(from.line, `${what}: ${issue.message}`);
	}
	return { errors };
}

/** Scalars as text; lists and mappings are left for the schema to refuse with its own message. */
function scalar(v: unknown): unknown {
	return typeof v === 'number' || typeof v === 'boolean' ? String(v) : v === null ? undefined : v;
}

function scalarText(v: unknown): unknown {
	return typeof v === 'number' ? String(v) : v;
}

function booleanOf(v: unknown): unknown {
	if (v === undefined || v === null) return undefined;
	if (typeof v === 'boolean') return v;
	const s = String(v).trim().toLowerCase();
	if (['true', 'yes', 'on', '1'].includes(s)) return true;
	if (['false', 'no', 'off', '0'].includes(s)) return false;
	return v;
}

function listOf(v: unknown): string[] | null {
	if (typeof v === 'string') return v.split(/[,\s]+/).filter(Boolean);
	if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
	return null;
}

function labelsOf(v: unknown): Record<string, string> | null {
	if (typeof v === 'string') {
		const out: Record<string, string> = {};
		for (const pair of v.split(',').filter((p) => p.trim())) {
			const eq = pair.indexOf('=');
			if (eq <= 0) return null;
			out[pair.slice(0, eq).trim()] = pair.slice(eq + 1).trim();
		}
		return out;
	}
	if (v && typeof v === 'object' && !Array.isArray(v)) {
		const out: Record<string, string> = {};
		for (const [k, x] of Object.entries(v)) {
			if (x !== null && typeof x === 'object') return null;
			out[k] = String(x ?? '');
		}
		return out;
	}
	return null;
}
