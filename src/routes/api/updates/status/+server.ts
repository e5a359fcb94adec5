import { json } from '@sveltejs/kit';
import { updatesStatusQuerySchema } from '$lib/schemas/runs';
import { listRuns } from '$lib/server/engine';
import { apiHandler, readQuery } from '$lib/server/http/api';
import { presentRun } from '$lib/server/http/present';
import { getRelease } from '$lib/server/releases/releases';
import { activeRolloutStates, listRollouts } from '$lib/server/rollouts/rollouts';
import { presentRollout } from '$lib/server/rollouts/present';
import { runStates, isRunEnded } from '$lib/states';
import type { RequestHandler } from './$types';

const ACTIVE_CAP = 500;

/**
 * One answer for a script that polls: every run and rollout still under way, and the most recent ended ones
 * (docs/api.md, "Update status"). Active ones are listed per state, so a long history never hides them.
 */
export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const { recent } = readQuery(url, updatesStatusQuerySchema);
	const activeRuns = (
		await Promise.all(runStates.filter((s) => !isRunEnded(s)).map((state) => listRuns({ limit: ACTIVE_CAP, state })))
	).flatMap((p) => p.items);
	// The newest `recent + active` hold at least `recent` ended ones, when there are that many.
	const endedRuns = recent
		? (await listRuns({ limit: recent + activeRuns.length })).items.filter((r) => isRunEnded(r.state)).slice(0, recent)
		: [];
	const rollouts = await Promise.all(activeRolloutStates.map((state) => listRollouts({ limit: ACTIVE_CAP, state })));
	const activeRollouts = rollouts.flatMap((p) => p.items);
	const endedRollouts = recent
		? (await listRollouts({ limit: recent + activeRollouts.length })).items
				.filter((r) => !activeRolloutStates.includes(r.state))
				.slice(0, recent)
		: [];
	const withRelease = (list: typeof activeRollouts) =>
		Promise.all(list.map(async (r) => presentRollout(r, await getRelease(r.releaseId))));
	return json({
		updating: activeRuns.length > 0 || activeRollouts.length > 0,
		runs: {
			active: activeRuns.sort((a, b) => b.number - a.number).map(presentRun),
			recent: endedRuns.map(presentRun)
		},
		rollouts: {
			active: await withRelease(activeRollouts.sort((a, b) => b.number - a.number)),
			recent: await withRelease(endedRollouts)
		}
	});
});
