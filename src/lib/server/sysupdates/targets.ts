import { eq, inArray, or } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { nodes, type Node } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Nodes by id or name, in the order given; an unknown one is a 400 naming `field`. */
export async function resolveNodes(refs: string[], field = 'nodes'): Promise<Node[]> {
	const ids = refs.filter((r) => UUID.test(r));
	const names = refs.filter((r) => !UUID.test(r));
	const rows = await db()
		.select()
		.from(nodes)
		.where(or(ids.length ? inArray(nodes.id, ids) : undefined, names.length ? inArray(nodes.name, names) : undefined));
	const found = refs.map((r) => rows.find((n) => n.id === r || n.name === r));
	const missing = refs.filter((_, i) => !found[i]);
	if (missing.length) {
		throw new ServiceError('validation_failed', `Unknown node(s): ${missing.join(', ')}`, {
			[field]: `unknown node ${missing[0]}`
		});
	}
	return [...new Map(found.map((n) => [n!.id, n!])).values()];
}

/** Every node whose host key is pinned: the ones the console may connect to. */
export async function pinnedNodes(): Promise<Node[]> {
	return db().select().from(nodes).where(eq(nodes.hostKeyStatus, 'pinned'));
}
