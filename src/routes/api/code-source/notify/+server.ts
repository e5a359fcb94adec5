import { json } from '@sveltejs/kit';
import { notifySchema } from '$lib/schemas/code-sync';
import { actorOf } from '$lib/server/audit';
import { notifyCommit } from '$lib/server/codesync/notify';
import { apiHandler, readJson } from '$lib/server/http/api';
import type { RequestHandler } from './$types';

/** The post-commit hook (docs/code-sync.md) calls this: the commit becomes each changed role's latest. */
export const POST: RequestHandler = apiHandler(async (event) =>
	json(await notifyCommit(actorOf(event), await readJson(event.request, notifySchema)))
);
