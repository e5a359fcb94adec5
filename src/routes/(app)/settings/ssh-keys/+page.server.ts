import { z } from 'zod';
import { checkbox, uuidSchema } from '$lib/schemas/common';
import { rotateKeysSchema } from '$lib/schemas/ssh-keys';
import { actorOf } from '$lib/server/audit';
import { formError, parseForm } from '$lib/server/http/forms';
import { listCredentials } from '$lib/server/keys/credentials';
import { retryFailedNodes } from '$lib/server/keys/driver';
import { credentialMarks, listKeyRotations, startKeyRotation } from '$lib/server/keys/rotation';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async ({ depends }) => {
	depends('app:ssh-keys');
	const [creds, marks, rotations] = await Promise.all([listCredentials(), credentialMarks(), listKeyRotations()]);
	return {
		credentials: creds.map((c) => ({ ...c, mark: marks.get(c.id) ?? null })),
		rotations
	};
};

/** The form's checkbox and select, read by the JSON endpoint's own schema. */
const rotateForm = rotateKeysSchema.omit({ remove_safety_net: true, dry_run: true, nodes: true }).extend({
	remove_safety_net: checkbox
});
const formShape = (form: FormData) => ({
	credential_id: form.get('credential_id') || undefined,
	remove_safety_net: form.get('remove_safety_net') ?? undefined
});

export const actions: Actions = {
	dryRun: async (event) => {
		const parsed = await parseForm(event.request, rotateForm, formShape);
		if (!parsed.ok) return parsed.failure;
		try {
			const started = await startKeyRotation(actorOf(event), { ...parsed.data, dry_run: true });
			return { dryRun: 'dryRun' in started ? started.dryRun : [] };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},
	rotate: async (event) => {
		const parsed = await parseForm(event.request, rotateForm, formShape);
		if (!parsed.ok) return parsed.failure;
		try {
			await startKeyRotation(actorOf(event), { ...parsed.data, dry_run: false });
			return { notice: 'Key rotation started: it moves on phase by phase below.' };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},
	retry: async (event) => {
		const parsed = await parseForm(event.request, z.object({ rotation_id: uuidSchema }));
		if (!parsed.ok) return parsed.failure;
		try {
			const { nodes } = await retryFailedNodes(actorOf(event), parsed.data.rotation_id);
			return {
				notice: `Trying ${nodes.join(', ')} again: every phase runs once more on ${nodes.length === 1 ? 'it' : 'them'}.`
			};
		} catch (err) {
			return formError(err, parsed.form);
		}
	}
};
