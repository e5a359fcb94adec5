import { json } from '@sveltejs/kit';
import { rotateKeysSchema } from '$lib/schemas/ssh-keys';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { startKeyRotation } from '$lib/server/keys/rotation';
import type { RequestHandler } from './$types';

/** Rotates the console's SSH key on its nodes (docs/ssh-key-rotation.md); `dry_run` answers what each host accepts. */
export const POST: RequestHandler = apiHandler(async (event) => {
	const started = await startKeyRotation(actorOf(event), await readJson(event.request, rotateKeysSchema));
	if ('dryRun' in started) return json({ hosts: started.dryRun });
	return json({ run_id: started.runId, rotation_id: started.rotationId }, { status: 202 });
});
