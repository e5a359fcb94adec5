import { and, asc, eq, inArray } from 'drizzle-orm';
import { imageOfRelease } from '$lib/server/appliances/images';
import { db } from '$lib/server/db';
import { agentEnrolments, agentJobs, releases } from '$lib/server/db/schema';
import { getNode } from '$lib/server/fleet/nodes';
import { windowsOf } from '$lib/server/sysupdates/windows';
import { POLL_SECONDS } from './jobs';
import type { AgentCaller } from './requests';

/**
 * An appliance's check-in (docs/pull-agent.md, "Appliance check-in"): a signed GET that says whether an update
 * waits for the node (a job of its agent), in the shape appliances ask for: the release's version, its image's
 * URL and sha256 when the release has an image (null otherwise), and when the appliance may reboot into it (its
 * maintenance window's start). A look only: the node's agent takes the job with `POST /api/updates/next` as any
 * agent does. It counts as a poll.
 */
export interface CheckinAnswer {
	update_available: boolean;
	update: { version: string; iso_url: string | null; sha256: string | null; reboot_after: string | null } | null;
	poll_seconds: number;
}

export async function applianceCheckin(caller: AgentCaller): Promise<CheckinAnswer> {
	await db().update(agentEnrolments).set({ lastPollAt: new Date() }).where(eq(agentEnrolments.nodeId, caller.nodeId));
	const [job] = await db()
		.select({ release: agentJobs.release })
		.from(agentJobs)
		.where(and(eq(agentJobs.nodeId, caller.nodeId), inArray(agentJobs.state, ['pending', 'running'])))
		.orderBy(asc(agentJobs.createdAt))
		.limit(1);
	if (!job) return { update_available: false, update: null, poll_seconds: POLL_SECONDS };
	const [release] = await db().select({ id: releases.id }).from(releases).where(eq(releases.version, job.release));
	const found = release ? await imageOfRelease(release.id) : null;
	// Only a complete image is one an appliance can fetch and boot.
	const image = found?.state === 'complete' ? found : null;
	const node = await getNode(caller.nodeId);
	const window = (await windowsOf([node])).get(node.id) ?? null;
	return {
		update_available: true,
		update: {
			version: job.release,
			iso_url: image?.sourceUrl ?? null,
			sha256: image?.sha256 ?? null,
			reboot_after: window?.start ?? null
		},
		poll_seconds: POLL_SECONDS
	};
}
