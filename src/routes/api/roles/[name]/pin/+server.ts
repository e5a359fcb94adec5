import { json } from '@sveltejs/kit';
import { pinSchema } from '$lib/schemas/code-sync';
import { roleNameSchema } from '$lib/schemas/nodes';
import { actorOf } from '$lib/server/audit';
import { pinCommit } from '$lib/server/codesync/notify';
import { apiHandler, readJson, validate } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** Sets the role's target to a commit notified for it before (docs/code-sync.md, "Pinning a role"). */
export const POST: RequestHandler = apiHandler(async (event) => {
	const name = validate(roleNameSchema, event.params.name);
	const { commit } = await readJson(event.request, pinSchema);
	return json(await pinCommit(actorOf(event), name, commit));
});
