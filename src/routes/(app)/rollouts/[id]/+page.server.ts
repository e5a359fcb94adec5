import { error } from '@sveltejs/kit';
import { updatesOfRuns } from '$lib/server/appliances/records';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError } from '$lib/server/http/forms';
import { getRelease } from '$lib/server/releases/releases';
import {
	advanceRollout,
	cancelRollout,
	pauseRollout,
	resumeRollout,
	rollbackRollout
} from '$lib/server/rollouts/driver';
import { presentRolloutDetail } from '$lib/server/rollouts/present';
import { getRollout, nodesOfRollout } from '$lib/server/rollouts/rollouts';
import type { Actions, PageServerLoad, RequestEvent } from './$types';

function rolloutId(id: string): string {
	if (!uuidSchema.safeParse(id).success) error(404, 'Rollout not found');
	return id;
}

export const load: PageServerLoad = async (event) => {
	event.depends('app:rollout');
	const id = rolloutId(event.params.id);
	let r;
	try {
		r = await getRollout(id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, 'Rollout not found');
		throw err;
	}
	const runIds = r.stages.flatMap((s) => (s.runId ? [s.runId] : []));
	// Appliance releases: each appliance's upload progress, shown beside its state.
	const appliances = Object.fromEntries(
		(await updatesOfRuns(runIds)).map((u) => [u.nodeId, { state: u.state, bytes: u.bytes, total: u.total }])
	);
	return {
		rollout: await presentRolloutDetail(r, await getRelease(r.releaseId), await nodesOfRollout(id)),
		appliances,
		canOperate: authorize(event.route.id, 'POST', '?/pause', principalOf(event)).allow
	};
};

async function act(event: RequestEvent, change: typeof pauseRollout, notice: string) {
	try {
		await change(actorOf(event), rolloutId(event.params.id));
		return { notice };
	} catch (err) {
		return formError(err);
	}
}

export const actions: Actions = {
	advance: (event) => act(event, advanceRollout, 'Advanced: the next stage starts.'),
	pause: (event) => act(event, pauseRollout, 'Paused: running nodes finish, no new ones start.'),
	resume: (event) => act(event, resumeRollout, 'Resumed: the failures so far are acknowledged.'),
	cancel: (event) => act(event, cancelRollout, 'Cancelled: nodes already updated keep the release.'),
	rollback: (event) => act(event, rollbackRollout, 'Fleet rollback started: changed nodes go back, last stage first.')
};
