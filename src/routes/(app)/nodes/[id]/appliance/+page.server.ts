import { error, redirect } from '@sveltejs/kit';
import { installApplianceSchema } from '$lib/schemas/appliances';
import { uuidSchema } from '$lib/schemas/common';
import { startApplianceInstall } from '$lib/server/appliances/install';
import { applianceOverview } from '$lib/server/appliances/slots';
import { actorOf } from '$lib/server/audit';
import { authorize } from '$lib/server/auth/access';
import { ServiceError } from '$lib/server/errors';
import { principalOf } from '$lib/server/http/api';
import { formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

function nodeId(id: string): string {
	// Not a UUID cannot be a node; asking PostgreSQL would only fail on the cast.
	if (!uuidSchema.safeParse(id).success) error(404, 'Node not found');
	return id;
}

export const load: PageServerLoad = async (event) => {
	event.depends('app:appliance');
	const id = nodeId(event.params.id);
	let overview;
	try {
		overview = await applianceOverview(id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, err.message);
		throw err;
	}
	if (overview.node.kind !== 'appliance') error(404, `${overview.node.name} is not an appliance`);
	const canInstall = authorize(event.route.id, 'POST', '?/install', principalOf(event)).allow;
	return { ...overview, canInstall };
};

export const actions: Actions = {
	/** Installs the slot helper and its units over SSH (docs/appliances.md, "Installing over SSH"). */
	install: async (event) => {
		const id = nodeId(event.params.id);
		const parsed = await parseForm(event.request, installApplianceSchema);
		if (!parsed.ok) return parsed.failure;
		let runId: string;
		try {
			({ runId } = await startApplianceInstall(actorOf(event), id, parsed.data, event.url.origin));
		} catch (err) {
			return formError(err, parsed.form);
		}
		// The run's page shows the install as it goes.
		redirect(303, `/runs/${runId}`);
	}
};
