import { error, redirect } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import {
	flowFor,
	lastEventId,
	cancelRun,
	getRun,
	pauseRun,
	resumeRun,
	retryFailed,
	outputBacklog
} from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError } from '$lib/server/http/forms';
import { presentRun, presentTask } from '$lib/server/http/present';
import type { Actions, PageServerLoad, RequestEvent } from './$types';

function runId(id: string): string {
	// Not a UUID cannot be a run; asking PostgreSQL would only fail on the cast.
	if (!uuidSchema.safeParse(id).success) error(404, 'Run not found');
	return id;
}

export const load: PageServerLoad = async (event) => {
	const id = runId(event.params.id);
	// Taken before the snapshot: a change in between then comes again by the stream, never goes missing.
	const after = await lastEventId();
	let run;
	try {
		run = await getRun(id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, 'Run not found');
		throw err;
	}
	const principal = principalOf(event);
	const { tasks, ...summary } = run;
	return {
		run: presentRun(summary),
		tasks: tasks.map(presentTask),
		// The output each task printed up to `after`: the stream sends what follows.
		...(await outputBacklog(id, after)),
		after,
		canOperate: authorize(event.route.id, 'POST', '?/cancel', principal).allow,
		// A check or a scan only looks at nodes: cancelling it stops its tasks, with nothing to roll back.
		readOnly: flowFor(summary.kind)?.readOnly ?? false
	};
};

async function act(event: RequestEvent, change: typeof cancelRun, notice: string) {
	try {
		await change(actorOf(event), runId(event.params.id));
		return { notice };
	} catch (err) {
		return formError(err);
	}
}

export const actions: Actions = {
	cancel: (event) => act(event, cancelRun, 'Run cancelled: running tasks are being stopped and rolled back.'),
	pause: (event) => act(event, pauseRun, 'Run paused: running tasks finish, no new ones start.'),
	resume: (event) => act(event, resumeRun, 'Run resumed.'),
	retryFailed: async (event) => {
		let next;
		try {
			next = await retryFailed(actorOf(event), runId(event.params.id));
		} catch (err) {
			return formError(err);
		}
		redirect(303, `/runs/${next.id}`);
	}
};
