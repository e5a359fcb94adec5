import { inArray } from 'drizzle-orm';
import { db } from '$lib/server/db';
import { agentEnrolments } from '$lib/server/db/schema';
import type { StatusNote, StatusNotes } from '$lib/server/fleet/status';

/**
 * The pull agent's note on the Fleet Overview (fleet/status.ts): a pull node is not reached over SSH, so its
 * last contact is its agent's last poll, with the agent's version (docs/pull-agent.md).
 */
export const pullAgentNotes: StatusNotes = {
	name: 'pull_agent',
	async notesFor(nodeIds) {
		const rows = await db()
			.select({ nodeId: agentEnrolments.nodeId, at: agentEnrolments.lastPollAt, version: agentEnrolments.agentVersion })
			.from(agentEnrolments)
			.where(inArray(agentEnrolments.nodeId, nodeIds));
		return new Map<string, StatusNote>(
			rows.map((r) => [r.nodeId, { text: `pull agent${r.version ? ` ${r.version}` : ''} · last poll`, at: r.at }])
		);
	}
};

/** How a silent agent is named while a task waits for it: since when it has not polled (docs/pull-agent.md). */
export function silence(lastPollAt: Date | string | null): string {
	const at = typeof lastPollAt === 'string' ? lastPollAt : lastPollAt?.toISOString();
	return at ? `no poll since ${at}` : 'it has never polled';
}

/** A stage in progress: why each of these pull nodes still waits for its agent to take its job. */
export async function waitingWhy(nodeIds: string[]): Promise<Map<string, string>> {
	const rows = await db()
		.select({ nodeId: agentEnrolments.nodeId, at: agentEnrolments.lastPollAt })
		.from(agentEnrolments)
		.where(inArray(agentEnrolments.nodeId, nodeIds));
	return new Map(rows.map((r) => [r.nodeId, `waiting for its agent to take the job: ${silence(r.at)}`]));
}
