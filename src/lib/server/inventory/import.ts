import { eq, inArray } from 'drizzle-orm';
import { recordAudits, type Actor, type AuditEntry } from '$lib/server/audit';
import { db, type Database } from '$lib/server/db';
import { credentials, nodes } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { newNodeRow } from '$lib/server/fleet/nodes';
import { parseIniInventory } from './ini';
import { MAX_INVENTORY_HOSTS, type InventoryIssue } from './model';
import { planInventory, type NodeInput, type RoleGroups } from './plan';
import { parseYamlInventory } from './yaml';

export type InventoryFormat = 'ini' | 'yaml';

/**
 * The largest inventory accepted, in bytes. It stays under the server's own request limit (adapter-node's
 * BODY_SIZE_LIMIT, 512 KiB by default), so that a caller over it is told so by this check, in JSON.
 */
export const MAX_INVENTORY_BYTES = 500 * 1024;

export interface ImportRequest {
	text: string;
	format?: InventoryFormat;
	credentialId: string;
	roleGroups: RoleGroups;
	dryRun: boolean;
}

export interface ImportedNode {
	line: number;
	name: string;
	host: string;
	port: number;
	user: string;
	kind: NodeInput['kind'];
	roles: string[];
	labels: Record<string, string>;
	policy: NodeInput['policy'];
	control_plane: boolean;
	host_key_fingerprint: string | null;
	/** `create`: new (or, after a real import, created); `skip`: a node of that name exists and is left as it is. */
	action: 'create' | 'skip';
	reason?: string;
	/** The new node's id, after a real import. */
	id?: string;
}

export interface ImportResult {
	dry_run: boolean;
	format: InventoryFormat;
	nodes: ImportedNode[];
	created: number;
	skipped: number;
	errors: InventoryIssue[];
	warnings: InventoryIssue[];
}

/**
 * INI or YAML, when the caller does not say: YAML documents start with `---`, `%YAML`, `{`, or a
 * `key:` line (`all:`); INI starts with a `[section]` or a host line, which has no trailing colon.
 */
export function detectFormat(text: string): InventoryFormat {
	for (const raw of text.split(/\r?\n/)) {
		const line = raw.trim();
		if (!line || line.startsWith('#')) continue;
		if (line.startsWith(';') || line.startsWith('[')) return 'ini';
		if (line.startsWith('---') || line.startsWith('%YAML') || line.startsWith('{')) return 'yaml';
		return /^[^\s=]+:(\s|$)/.test(line.replace(/\s+#.*$/, '')) ? 'yaml' : 'ini';
	}
	return 'ini';
}

/** Checks the size and encoding of an inventory given as bytes, and returns its text. */
export function inventoryText(bytes: Uint8Array): string {
	if (bytes.byteLength > MAX_INVENTORY_BYTES) throw tooLarge(bytes.byteLength);
	let text: string;
	try {
		text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
	} catch {
		throw new ServiceError('validation_failed', 'The inventory is not UTF-8 text', { inventory: 'is not UTF-8 text' });
	}
	if (text.includes('\u0000')) {
		throw new ServiceError('validation_failed', 'The inventory is not a text file (it contains NUL bytes)', {
			inventory: 'is not a text file'
		});
	}
	return text.replace(/^\uFEFF/, '');
}

export const tooLarge = (size: number) =>
	new ServiceError(
		'payload_too_large',
		`The inventory is ${Math.ceil(size / 1024)} KiB; at most ${MAX_INVENTORY_BYTES / 1024} KiB (${MAX_INVENTORY_BYTES} bytes) is accepted. Import it in parts.`,
		{ inventory: `is larger than ${MAX_INVENTORY_BYTES / 1024} KiB` }
	);

/** `all`, `none` or group names separated by commas, as the API and the form take it. */
export function parseRoleGroups(value: string | null | undefined): RoleGroups {
	const v = (value ?? '').trim();
	if (v === '' || v === 'all') return 'all';
	if (v === 'none') return 'none';
	return [
		...new Set(
			v
				.split(',')
				.map((g) => g.trim())
				.filter(Boolean)
		)
	];
}

/**
 * Reads an Ansible inventory and plans the nodes it describes; unless it is a dry run and when nothing is
 * wrong, creates them. Nodes whose name exists already are skipped, never changed: an import adds to the
 * fleet and cannot alter or take over what an admin set up. Any error, and nothing is written; otherwise
 * every node is created in one transaction with its audit rows, or none is.
 */
export async function importInventory(actor: Actor, req: ImportRequest): Promise<ImportResult> {
	if (new TextEncoder().encode(req.text).byteLength > MAX_INVENTORY_BYTES) {
		throw tooLarge(new TextEncoder().encode(req.text).byteLength);
	}
	if (!req.text.trim()) {
		throw new ServiceError('validation_failed', 'The inventory is empty', { inventory: 'is empty' });
	}
	const [credential] = await db()
		.select({ id: credentials.id })
		.from(credentials)
		.where(eq(credentials.id, req.credentialId));
	if (!credential) {
		throw new ServiceError('validation_failed', 'No such credential', { credential_id: 'no such credential' });
	}

	const format = req.format ?? detectFormat(req.text);
	const parsed = format === 'yaml' ? parseYamlInventory(req.text) : parseIniInventory(req.text);
	if (Array.isArray(req.roleGroups)) {
		const unknown = req.roleGroups.filter((g) => !parsed.inventory.groups.has(g));
		if (unknown.length && !parsed.errors.length) {
			throw new ServiceError('validation_failed', `The inventory has no group ${unknown.join(', ')}`, {
				role_groups: `names groups the inventory does not have: ${unknown.join(', ')}`
			});
		}
	}
	const plan = planInventory(parsed, { credentialId: req.credentialId, roleGroups: req.roleGroups });
	if (plan.nodes.length > MAX_INVENTORY_HOSTS) {
		plan.errors.push({ line: 1, message: `More than ${MAX_INVENTORY_HOSTS} hosts: import the inventory in parts` });
	}

	const result = (planned: ImportedNode[]): ImportResult => ({
		dry_run: req.dryRun || plan.errors.length > 0,
		format,
		nodes: planned,
		created: planned.filter((n) => n.action === 'create' && (req.dryRun || n.id)).length,
		skipped: planned.filter((n) => n.action === 'skip').length,
		errors: plan.errors,
		warnings: plan.warnings
	});

	if (plan.errors.length || req.dryRun) {
		const existing = await existingNames(
			db(),
			plan.nodes.map((n) => n.input.name)
		);
		plan.warnings.push(...(await sameAddress(db(), plan.nodes, existing)));
		return result(plan.nodes.map((n) => view(n, existing)));
	}

	return db().transaction(async (txn) => {
		const tx = txn as unknown as Database;
		const existing = await existingNames(
			tx,
			plan.nodes.map((n) => n.input.name)
		);
		plan.warnings.push(...(await sameAddress(tx, plan.nodes, existing)));
		const planned = plan.nodes.map((n) => view(n, existing));
		const fresh = plan.nodes.filter((n) => !existing.has(n.input.name));
		const ids = new Map<string, string>();
		// In slices: PostgreSQL takes at most 65535 parameters per statement, 17 columns a row here.
		for (let i = 0; i < fresh.length; i += 1000) {
			const rows = await tx
				.insert(nodes)
				.values(fresh.slice(i, i + 1000).map(({ input }) => newNodeRow(input)))
				// A node of that name made since the check above: skipped like the others.
				.onConflictDoNothing({ target: nodes.name })
				.returning({ id: nodes.id, name: nodes.name });
			for (const r of rows) ids.set(r.name, r.id);
		}
		for (const n of planned) {
			if (n.action !== 'create') continue;
			const id = ids.get(n.name);
			if (id) n.id = id;
			else Object.assign(n, { action: 'skip', reason: 'a node of this name was added meanwhile' });
		}
		const done = result(planned);
		const audits: AuditEntry[] = planned
			.filter((n) => n.id)
			.map((n) => ({
				action: 'node.create',
				targetType: 'node',
				targetId: n.id,
				details: {
					name: n.name,
					host: n.host,
					port: n.port,
					pinned: n.host_key_fingerprint,
					via: 'inventory.import'
				}
			}));
		audits.push({
			action: 'inventory.import',
			targetType: 'credential',
			targetId: req.credentialId,
			details: {
				format,
				role_groups: req.roleGroups,
				created: done.created,
				skipped: planned.filter((n) => n.action === 'skip').map((n) => n.name)
			}
		});
		await recordAudits(actor, audits, tx);
		return done;
	});
}

async function existingNames(executor: Database, names: string[]): Promise<Set<string>> {
	const found = new Set<string>();
	for (let i = 0; i < names.length; i += 1000) {
		const rows = await executor
			.select({ name: nodes.name })
			.from(nodes)
			.where(inArray(nodes.name, names.slice(i, i + 1000)));
		for (const r of rows) found.add(r.name);
	}
	return found;
}

/** A new node at the address of an existing one is allowed (two names, one machine), but worth a look. */
async function sameAddress(
	executor: Database,
	planned: { line: number; input: NodeInput }[],
	existing: Set<string>
): Promise<InventoryIssue[]> {
	const fresh = planned.filter((n) => !existing.has(n.input.name));
	if (!fresh.length) return [];
	const hosts = [...new Set(fresh.map((n) => n.input.host))];
	const byAddress = new Map<string, string>();
	for (let i = 0; i < hosts.length; i += 1000) {
		const rows = await executor
			.select({ name: nodes.name, host: nodes.host, port: nodes.port })
			.from(nodes)
			.where(inArray(nodes.host, hosts.slice(i, i + 1000)));
		for (const r of rows) byAddress.set(`${r.host}:${r.port}`, r.name);
	}
	// In the inventory's order, so that of two hosts on one address the second is the one warned about.
	return fresh.flatMap((n) => {
		const address = `${n.input.host}:${n.input.port}`;
		const other = byAddress.get(address);
		if (!other) {
			byAddress.set(address, `${n.input.name} (line ${n.line} of this inventory)`);
			return [];
		}
		return [{ line: n.line, host: n.input.name, message: `${address} is also the address of node ${other}` }];
	});
}

function view(n: { line: number; input: NodeInput }, existing: Set<string>): ImportedNode {
	const i = n.input;
	return {
		line: n.line,
		name: i.name,
		host: i.host,
		port: i.port,
		user: i.user,
		kind: i.kind,
		roles: i.roles,
		labels: i.labels,
		policy: i.policy,
		control_plane: i.control_plane,
		host_key_fingerprint: i.host_key_fingerprint ?? null,
		action: existing.has(i.name) ? 'skip' : 'create',
		...(existing.has(i.name) ? { reason: 'a node of this name exists; it is left as it is' } : {})
	};
}
