import { and, asc, eq, inArray, or, sql } from 'drizzle-orm';
import type { z } from 'zod';
import type { scanSchema } from '$lib/schemas/certificates';
import type { Actor } from '$lib/server/audit';
import { db } from '$lib/server/db';
import { certRoles, nodes, type CertRole, type Node } from '$lib/server/db/schema';
import { createRun, type Flow, type StepContext } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { sh } from '$lib/server/ssh/shell';
import { daysLeft } from './expiry';
import { handshake } from './handshake';
import { observe, recordObservations, type Observation } from './inventory';
import { quietExec } from './remote';
import { certRolesOf } from './roles';
import { trustedAuthorities } from './trust';

/**
 * The certificate scan (docs/certificates.md, "Inventory"): per node, each of its certificate roles' file is
 * read over SSH, and each of their endpoints is handshaked with from the console, then everything is recorded
 * together so that a file and an endpoint that disagree are flagged.
 */

type Ctx = StepContext<Record<string, never>>;

const found = new WeakMap<object, Observation[]>();
const observationsOf = (ctx: Ctx) => found.get(ctx.memo) ?? found.set(ctx.memo, []).get(ctx.memo)!;

/**
 * An endpoint's place in the inventory: `host:port`, with the SNI name when one is configured, since one port
 * commonly serves a certificate per name (virtual hosts), and each is its own row.
 */
export const endpointLocation = (node: Pick<Node, 'host'>, port: number, servername?: string | null) =>
	servername ? `${node.host}:${port} (${servername})` : `${node.host}:${port}`;

export function describe(o: Observation): string {
	if (!o.facts) return `${o.location}: ${o.error}`;
	const f = o.facts;
	const left = daysLeft(f.notAfter);
	const expiry = left < 0 ? `EXPIRED ${-left} days ago` : `${left} days left`;
	return `${o.location}: ${f.subject}, ${expiry}, sha256 ${f.fingerprint}${f.chainVerified ? '' : ` (chain: ${f.chainError})`}`;
}

async function rolesFor(ctx: Ctx): Promise<CertRole[]> {
	const roles = await certRolesOf(ctx.node.roles);
	if (!roles.length) ctx.skip('none of its roles has certificate settings');
	return roles;
}

/** Reads each role's certificate file on the node; a file that cannot be read is an observation with its error. */
export async function observeFiles(ctx: StepContext<unknown>, roles: CertRole[]): Promise<Observation[]> {
	const trusted = await trustedAuthorities();
	const out: Observation[] = [];
	for (const role of roles) {
		const o: Observation = { source: 'file', location: role.certPath, role: role.role };
		try {
			const { stdout } = await quietExec(ctx, sh`cat -- ${role.certPath}`, { deadlineMs: 10_000 });
			o.facts = observe(stdout, trusted);
		} catch (err) {
			if (ctx.signal.aborted) throw err;
			o.error = `could not read ${role.certPath}: ${(err as Error).message}`;
		}
		ctx.log(describe(o));
		out.push(o);
	}
	return out;
}

/** Handshakes with each role's endpoints from the console; one that fails is an observation with its error. */
export async function observeEndpoints(ctx: StepContext<unknown>, roles: CertRole[]): Promise<Observation[]> {
	const trusted = await trustedAuthorities();
	const out: Observation[] = [];
	for (const role of roles) {
		for (const ep of role.endpoints) {
			const o: Observation = {
				source: 'endpoint',
				location: endpointLocation(ctx.node, ep.port, ep.servername),
				role: role.role,
				servername: ep.servername ?? null
			};
			try {
				const served = await handshake(ctx.node.host, ep.port, { servername: ep.servername, signal: ctx.signal });
				o.facts = observe(served.leaf.toString(), trusted, served.chain);
			} catch (err) {
				if (ctx.signal.aborted) throw err;
				o.error = (err as Error).message;
			}
			ctx.log(describe(o));
			out.push(o);
		}
	}
	return out;
}

/** Records a node's file and endpoint observations, and says in the log where they disagree. */
export async function recordNode(ctx: StepContext<unknown>, observed: Observation[]): Promise<void> {
	await recordObservations(ctx.node.id, observed, ['file', 'endpoint']);
	for (const f of observed.filter((o) => o.source === 'file' && o.facts)) {
		const differs = observed.some(
			(e) => e.source === 'endpoint' && e.role === f.role && e.facts && e.facts.fingerprint !== f.facts!.fingerprint
		);
		if (differs) ctx.log(`${f.role}: the endpoint serves another certificate than ${f.location} holds (not reloaded?)`);
	}
}

export const certScanFlow: Flow<Record<string, never>> = {
	kind: 'cert-scan',
	title: 'Certificate scan',
	readOnly: true,
	parseParams: () => ({}),
	steps: [
		{
			name: 'files',
			deadlineMs: 60_000,
			async do(ctx) {
				const out = observationsOf(ctx);
				out.length = 0;
				out.push(...(await observeFiles(ctx, await rolesFor(ctx))));
			}
		},
		{
			name: 'endpoints',
			deadlineMs: 120_000,
			async do(ctx) {
				observationsOf(ctx).push(...(await observeEndpoints(ctx, await rolesFor(ctx))));
			}
		},
		{
			name: 'record',
			deadlineMs: 30_000,
			async do(ctx) {
				await recordNode(ctx, observationsOf(ctx));
			}
		}
	],
	// Reading and handshaking change nothing: after a crash the scan simply runs again.
	inspect: async () => 'restart'
};

export type ScanInput = z.infer<typeof scanSchema>;

/** Resolves node ids or names to rows; an unknown one is a 400 naming it in `field`. */
export async function resolveNodes(given: string[], field: string): Promise<Node[]> {
	const ids = given.filter((n) => /^[0-9a-f-]{36}$/i.test(n));
	const names = given.filter((n) => !ids.includes(n));
	const rows = await db()
		.select()
		.from(nodes)
		.where(or(ids.length ? inArray(nodes.id, ids) : undefined, names.length ? inArray(nodes.name, names) : undefined));
	const known = new Set(rows.flatMap((n) => [n.id, n.name]));
	const missing = given.filter((n) => !known.has(n));
	if (missing.length) {
		throw new ServiceError('validation_failed', `Unknown node: ${missing.join(', ')}`, {
			[field]: `no node ${missing.join(', ')}`
		});
	}
	return rows;
}

/** Nodes that carry a role with certificate settings and whose host key is accepted. */
async function scannableNodes(): Promise<Node[]> {
	return db()
		.select()
		.from(nodes)
		.where(
			and(
				eq(nodes.hostKeyStatus, 'pinned'),
				sql`exists (select 1 from ${certRoles} cr where cr.role = any(${nodes.roles}))`
			)
		)
		.orderBy(asc(nodes.name));
}

/** `POST /api/security/certificates/scan`: a read-only run over the given nodes, or every node with a certificate role. */
export async function startScan(actor: Actor, input: ScanInput = {}): Promise<{ runId: string; nodes: number }> {
	const targets = input.nodes ? await resolveNodes(input.nodes, 'nodes') : await scannableNodes();
	if (!targets.length) {
		throw new ServiceError('conflict', 'No node to scan: define certificate settings for a role its nodes carry', {
			nodes: 'no node with a certificate role'
		});
	}
	const run = await createRun(actor, {
		kind: 'cert-scan',
		title: input.nodes?.length === 1 ? `Certificate scan of ${targets[0]!.name}` : 'Certificate scan',
		nodeIds: targets.map((n) => n.id),
		scope: input.nodes ? { nodes: input.nodes } : {},
		options: { concurrency: 20 }
	});
	return { runId: run.id, nodes: targets.length };
}

/** Who starts the scheduled scans, as their runs and the audit log say. */
const scheduledScanActor: Actor = { id: null, name: 'cert-scan', via: 'system', ip: null };

/** The daily scan: every node with a certificate role (none: nothing to do). */
export async function runScheduledScan(): Promise<{ run_id: string | null; nodes: number }> {
	if (!(await scannableNodes()).length) return { run_id: null, nodes: 0 };
	const { runId, nodes: n } = await startScan(scheduledScanActor);
	return { run_id: runId, nodes: n };
}
