import { and, eq, gt, isNull } from 'drizzle-orm';
import type { CreateEnrolToken } from '$lib/schemas/agents';
import { recordAudit, type Actor } from '$lib/server/audit';
import { hashToken } from '$lib/server/auth/tokens';
import { db } from '$lib/server/db';
import { agentEnrolTokens } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { getNode } from '$lib/server/fleet/nodes';
import { sh } from '$lib/server/ssh/shell';
import { storeNewSecret, type PublicEnrolment } from './enrolment';
import { headers, newAgentSecret } from './signing';

/**
 * One-time enrolment tokens (docs/pull-agent.md, "Enrolment"): an admin makes one for a node; the agent, started
 * with it, exchanges it once for the node's secret, so the secret never passes through a person's hands. A node
 * has at most one token waiting: a new one replaces it.
 */

export interface NewEnrolToken {
	node_id: string;
	token: string;
	expires_at: string;
}

export async function createEnrolToken(actor: Actor, nodeId: string, input: CreateEnrolToken): Promise<NewEnrolToken> {
	const node = await getNode(nodeId);
	// The same shape as the agent's secret: 256 random bits in hex, which the agent's POSIX sh can check.
	const token = newAgentSecret();
	const expiresAt = new Date(Date.now() + input.expires_in_minutes * 60_000);
	await db().transaction(async (tx) => {
		await tx.delete(agentEnrolTokens).where(and(eq(agentEnrolTokens.nodeId, node.id), isNull(agentEnrolTokens.usedAt)));
		await tx
			.insert(agentEnrolTokens)
			.values({ nodeId: node.id, tokenHash: hashToken(token), createdBy: actor.name, expiresAt });
		await recordAudit(
			actor,
			{
				action: 'agent.enrol_token',
				targetType: 'node',
				targetId: node.id,
				details: { node: node.name, expires_at: expiresAt.toISOString() }
			},
			tx
		);
	});
	return { node_id: node.id, token, expires_at: expiresAt.toISOString() };
}

/** When the node's waiting enrolment token expires; null when none is waiting. */
export async function pendingEnrolToken(nodeId: string): Promise<{ expiresAt: Date } | null> {
	const [row] = await db()
		.select({ expiresAt: agentEnrolTokens.expiresAt })
		.from(agentEnrolTokens)
		.where(
			and(
				eq(agentEnrolTokens.nodeId, nodeId),
				isNull(agentEnrolTokens.usedAt),
				gt(agentEnrolTokens.expiresAt, new Date())
			)
		);
	return row ?? null;
}

const refused = (message: string, why: string) =>
	new ServiceError('unauthenticated', message, { [headers.enrolToken]: why });

/**
 * The agent's exchange: the token, once and before it expires, for the node's new secret (enrolling the agent,
 * or replacing its secret). Refused with a 401 naming the token's header otherwise, with nothing changed.
 */
export async function exchangeEnrolToken(
	{ nodeId, token }: { nodeId: string; token: string },
	ip: string | null
): Promise<PublicEnrolment & { secret: string }> {
	return db().transaction(async (tx) => {
		// Locked, so that two exchanges of one token at once cannot both succeed.
		const [row] = await tx
			.select()
			.from(agentEnrolTokens)
			.where(eq(agentEnrolTokens.tokenHash, hashToken(token)))
			.for('update');
		// Another node's token is as good as unknown here: saying whose it is would tell its holder too much.
		if (!row || row.nodeId !== nodeId) {
			throw refused('This enrolment token is not known for this node', 'is not known for this node');
		}
		if (row.usedAt) throw refused('This enrolment token was already used', 'was already used');
		if (row.expiresAt.getTime() <= Date.now()) throw refused('This enrolment token has expired', 'has expired');
		await tx.update(agentEnrolTokens).set({ usedAt: new Date() }).where(eq(agentEnrolTokens.id, row.id));
		const enrolled = await storeNewSecret(tx, row.nodeId);
		const node = await getNode(row.nodeId);
		await recordAudit(
			{ id: null, name: `agent of ${node.name}`, via: 'enrolment token', ip },
			{
				action: 'agent.enrol',
				targetType: 'node',
				targetId: node.id,
				details: { node: node.name, token_id: row.id, token_created_by: row.createdBy }
			},
			tx
		);
		return enrolled;
	});
}

/**
 * The command that starts the agent on the node with its token, each value quoted by the one quoting helper.
 * The node's own update commands (`UPDATE_BACKUP_CMD` …) come from its environment (docs/pull-agent.md).
 */
export function agentStartCommand(consoleUrl: string, nodeId: string, token: string): string {
	return sh`FLOTILLA_URL=${consoleUrl} FLOTILLA_NODE_ID=${nodeId} FLOTILLA_ENROL_TOKEN=${token} sh flotilla-agent`
		.script;
}
