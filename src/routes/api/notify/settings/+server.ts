import { json } from '@sveltejs/kit';
import { notifySettingsSchema } from '$lib/schemas/notify';
import { actorOf } from '$lib/server/audit';
import { apiHandler, readJson } from '$lib/server/http/api';
import { readNotifySettings, updateNotifySettings } from '$lib/server/notify/settings';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async () => {
	const s = await readNotifySettings();
	return json({ allow_private_targets: s.allowPrivateTargets });
});

export const PUT: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, notifySettingsSchema, { maxBytes: 1_024 });
	const s = await updateNotifySettings(actorOf(event), { allowPrivateTargets: input.allow_private_targets });
	return json({ allow_private_targets: s.allowPrivateTargets });
});
