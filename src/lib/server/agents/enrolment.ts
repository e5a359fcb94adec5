import { and, eq, isNull } from 'drizzle-orm';
import { recordAudit, type Actor } from '$lib/server/audit';
import { masterKey } from '$lib/server/crypto/master-key';
import { openSecret, sealSecret } from '$lib/server/crypto/secret-box';
import { db, type Database } from '$lib/server/db';
import { agentEnrolments, agentEnrolTokens, type AgentEnrolment } from '$lib/server/db/schema';
import { notFound } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { newAgentSecret } from './signing';

/**
 * Enrolment of a node's pull agent (docs/pull-agent.md, "Enrolment"): the console makes the node's secret, shows
 * it once, and keeps it sealed under the master key, bound to the node's id, as it keeps SSH keys.
 */

const context = (nodeId: string) => `agent:${nodeId}:secret`;

export interface PublicEnrolment {
	node_id: string;
	enrolled_at: string;
	last_poll_at: string | null;
	agent_version: string | null;
}

function present(row: AgentEnrolment): PublicEnrolment {
	return {
		node_id: row.nodeId,
		enrolled_at: row.createdAt.toISOString(),
		last_poll_at: row.lastPollAt?.toISOString() ?? null,
		agent_version: row.agentVersion
	};
}

/**
 * Gives the node's agent a new secret, sealed, in `executor` (a transaction when the caller has one): enrols
 * it, or replaces its secret, so that the old one stops working at once. `secret` is given when it was put on
 * the node first (installing over SSH).
 */
export async function storeNewSecret(
	executor: Database,
	nodeId: string,
	secret = newAgentSecret()
): Promise<PublicEnrolment & { secret: string }> {
	const sealedSecret = sealSecret(masterKey(), secret, context(nodeId));
	const [row] = await executor
		.insert(agentEnrolments)
		.values({ nodeId, sealedSecret })
		.onConflictDoUpdate({
			target: agentEnrolments.nodeId,
			set: { sealedSecret, createdAt: new Date(), lastPollAt: null, agentVersion: null }
		})
		.returning();
	return { ...present(row!), secret };
}

/** Enrols the node's agent, or gives it a new secret (the old one stops working at once). */
export async function enrolAgent(actor: Actor, nodeId: string): Promise<PublicEnrolment & { secret: string }> {
	const node = await getNode(nodeId);
	return db().transaction(async (tx) => {
		const enrolled = await storeNewSecret(tx, node.id);
		await recordAudit(
			actor,
			{ action: 'agent.enrol', targetType: 'node', targetId: node.id, details: { node: node.name } },
			tx
		);
		return enrolled;
	});
}

/** The node's agent enrolment; null when it has none. */
export async function enrolmentOf(nodeId: string): Promise<PublicEnrolment | null> {
	const [row] = await db().select().from(agentEnrolments).where(eq(agentEnrolments.nodeId, nodeId));
	return row ? present(row) : null;
}

export async function getEnrolment(nodeId: string): Promise<PublicEnrolment> {
	const node = await getNode(nodeId);
	const enrolment = await enrolmentOf(node.id);
	if (!enrolment) throw notFound(`An agent enrolment for node ${node.name}`);
	return enrolment;
}

/**
 * Revokes the node's agent: its requests are refused from now on, and an enrolment token not yet used can no
 * longer be exchanged. A 404 when there was neither.
 */
export async function revokeAgent(actor: Actor, nodeId: string): Promise<void> {
	const node = await getNode(nodeId);
	await db().transaction(async (tx) => {
		const gone = await tx
			.delete(agentEnrolments)
			.where(eq(agentEnrolments.nodeId, node.id))
			.returning({ nodeId: agentEnrolments.nodeId });
		const tokens = await tx
			.delete(agentEnrolTokens)
			.where(and(eq(agentEnrolTokens.nodeId, node.id), isNull(agentEnrolTokens.usedAt)))
			.returning({ id: agentEnrolTokens.id });
		if (!gone.length && !tokens.length) throw notFound(`An agent enrolment for node ${node.name}`);
		await recordAudit(
			actor,
			{
				action: 'agent.revoke',
				targetType: 'node',
				targetId: node.id,
				details: { node: node.name, enrolled: gone.length > 0, unused_tokens: tokens.length }
			},
			tx
		);
	});
}

/** The enrolled node's secret, unsealed; null when the node has no agent. */
export async function agentSecret(nodeId: string): Promise<string | null> {
	const [row] = await db()
		.select({ sealed: agentEnrolments.sealedSecret })
		.from(agentEnrolments)
		.where(eq(agentEnrolments.nodeId, nodeId));
	return row ? openSecret(masterKey(), row.sealed, context(nodeId)) : null;
}

/** Whether a node's updates go through its agent rather than over SSH. */
export async function isPullNode(nodeId: string): Promise<boolean> {
	return (await enrolmentOf(nodeId)) !== null;
}
