import { redirect } from '@sveltejs/kit';
import { authorize } from '$lib/server/auth/access';
import { actorOf } from '$lib/server/audit';
import { echo, formError, readFormData } from '$lib/server/http/forms';
import { principalOf } from '$lib/server/http/api';
import { listReleases, presentRelease } from '$lib/server/releases/releases';
import { driveRollout } from '$lib/server/rollouts/driver';
import { rolloutFromForm } from '$lib/server/rollouts/forms';
import { presentRollout } from '$lib/server/rollouts/present';
import { createRollout, listRollouts, PRESETS } from '$lib/server/rollouts/rollouts';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async (event) => {
	event.depends('app:rollouts');
	const releases = await listReleases({ limit: 100 });
	const byId = new Map(releases.map((r) => [r.id, r]));
	const page = await listRollouts({ limit: 100 });
	return {
		rollouts: page.items.map((r) => presentRollout(r, byId.get(r.releaseId))),
		releases: releases.map(presentRelease),
		presets: PRESETS,
		canOperate: authorize(event.route.id, 'POST', '?/create', principalOf(event)).allow
	};
};

export const actions: Actions = {
	preview: async (event) => {
		const read = await readFormData(event.request);
		if (!read.ok) return read.failure;
		try {
			const input = rolloutFromForm(read.form);
			const { preview } = await createRollout(actorOf(event), { ...input, dry_run: true });
			// The form stays filled in as previewed: a field an earlier refusal echoed would otherwise go back to its
			// default when this answer replaces that one.
			return { preview, values: echo(read.form) };
		} catch (err) {
			return formError(err, read.form);
		}
	},
	create: async (event) => {
		const read = await readFormData(event.request);
		if (!read.ok) return read.failure;
		let id: string;
		try {
			const { rollout } = await createRollout(actorOf(event), rolloutFromForm(read.form));
			id = rollout!.id;
			await driveRollout(id);
		} catch (err) {
			return formError(err, read.form);
		}
		redirect(303, `/rollouts/${id}`);
	}
};
