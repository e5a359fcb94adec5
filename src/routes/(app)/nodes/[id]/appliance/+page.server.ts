import { error } from '@sveltejs/kit';
import { uuidSchema } from '$lib/schemas/common';
import { applianceOverview } from '$lib/server/appliances/slots';
import { ServiceError } from '$lib/server/errors';
import type { PageServerLoad } from './$types';

export const load: PageServerLoad = async (event) => {
	event.depends('app:appliance');
	// Not a UUID cannot be a node; asking PostgreSQL would only fail on the cast.
	if (!uuidSchema.safeParse(event.params.id).success) error(404, 'Node not found');
	let overview;
	try {
		overview = await applianceOverview(event.params.id);
	} catch (err) {
		if (err instanceof ServiceError && err.status === 404) error(404, err.message);
		throw err;
	}
	if (overview.node.kind !== 'appliance') error(404, `${overview.node.name} is not an appliance`);
	return overview;
};
