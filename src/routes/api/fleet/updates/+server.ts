import { json } from '@sveltejs/kit';
import { fleetUpdateSchema } from '$lib/schemas/appliances';
import { createFleetUpdate } from '$lib/server/appliances/fleet-updates';
import { presentImage } from '$lib/server/appliances/images';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { presentRelease } from '$lib/server/releases/releases';
import { driveRollout } from '$lib/server/rollouts/driver';
import { presentRollout } from '$lib/server/rollouts/present';
import { getRollout } from '$lib/server/rollouts/rollouts';
import { presentWindow } from '$lib/server/sysupdates/windows';
import type { RequestHandler } from './$types';

/** An uploaded appliance image's rollout and maintenance windows in one body (docs/appliances.md, "Fleet updates"). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, fleetUpdateSchema);
	const made = await createFleetUpdate(actorOf(event), input);
	await driveRollout(made.rollout.id);
	const rollout = await getRollout(made.rollout.id);
	return json(
		{
			release: presentRelease(made.release),
			image: presentImage(made.image, made.release),
			rollout: { ...presentRollout(rollout, made.release), preview: made.preview },
			maintenance_windows: made.windows.map(presentWindow)
		},
		{ status: 201 }
	);
});
