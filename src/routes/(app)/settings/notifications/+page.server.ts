import { z } from 'zod';
import { checkbox, uuidSchema } from '$lib/schemas/common';
import { channelFormSchema } from '$lib/schemas/notify';
import { actorOf } from '$lib/server/audit';
import { formError, parseForm } from '$lib/server/http/forms';
import { createChannel, deleteChannel, listChannels, recentDeliveries } from '$lib/server/notify/channels';
import { presentChannel, presentDelivery } from '$lib/server/notify/present';
import { sendTest } from '$lib/server/notify/register';
import { readNotifySettings, updateNotifySettings } from '$lib/server/notify/settings';
import type { Actions, PageServerLoad } from './$types';

const DELIVERIES_SHOWN = 10;

export const load: PageServerLoad = async () => {
	const channels = await listChannels();
	return {
		settings: await readNotifySettings(),
		channels: await Promise.all(
			channels.map(async (c) => ({
				...presentChannel(c),
				deliveries: (await recentDeliveries(c.id, DELIVERIES_SHOWN)).map(presentDelivery)
			}))
		)
	};
};

const idForm = z.object({ id: uuidSchema }).strict();
const settingsForm = z.object({ allow_private_targets: checkbox }).strict();

export const actions: Actions = {
	create: async (event) => {
		const parsed = await parseForm(event.request, channelFormSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const { channel, secret } = await createChannel(actorOf(event), parsed.data);
			return { notice: `Added ${channel.name}.`, secret };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	test: async (event) => {
		const parsed = await parseForm(event.request, idForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await sendTest(actorOf(event), parsed.data.id);
			return { notice: 'Test message queued: its delivery shows below.' };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	delete: async (event) => {
		const parsed = await parseForm(event.request, idForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await deleteChannel(actorOf(event), parsed.data.id);
			return { notice: 'Channel deleted.' };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	settings: async (event) => {
		const parsed = await parseForm(event.request, settingsForm);
		if (!parsed.ok) return parsed.failure;
		await updateNotifySettings(actorOf(event), { allowPrivateTargets: parsed.data.allow_private_targets });
		return {
			notice: parsed.data.allow_private_targets
				? 'Private, loopback and link-local targets are now allowed.'
				: 'Private, loopback and link-local targets are refused again.'
		};
	}
};
