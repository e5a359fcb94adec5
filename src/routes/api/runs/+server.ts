import { json } from '@sveltejs/kit';
import { createRunSchema, runQuerySchema } from '$lib/schemas/runs';
import { actorOf } from '$lib/server/audit';
import { createRun, flowFor, listRuns, registeredKinds } from '$lib/server/engine';
import { ServiceError } from '$lib/server/errors';
import { apiHandler, readJson, readQuery } from '$lib/server/http/api';
import { presentRun } from '$lib/server/http/present';
import type { RequestHandler } from './$types';

export const GET: RequestHandler = apiHandler(async ({ url }) => {
	const page = await listRuns(readQuery(url, runQuerySchema));
	return json({ items: page.items.map(presentRun), next_cursor: page.nextCursor });
});

/**
 * Starts a run of a look-only kind (its flow is `readOnly`; today `check`). Runs that change nodes start from
 * their own feature's endpoints, which show a plan first.
 */
export const POST: RequestHandler = apiHandler(async (event) => {
	const input = await readJson(event.request, createRunSchema);
	const flow = flowFor(input.kind);
	if (!flow?.readOnly) {
		const kinds = registeredKinds().filter((k) => flowFor(k)?.readOnly);
		throw new ServiceError('validation_failed', `Runs of kind ${input.kind} do not start here`, {
			kind: `must be ${kinds.join(' or ')} (other runs start from their own endpoints)`
		});
	}
	const o = input.options ?? {};
	const run = await createRun(actorOf(event), {
		kind: input.kind,
		title: `${flow.title ?? flow.kind} ${input.nodes.length} node${input.nodes.length === 1 ? '' : 's'}`,
		nodeIds: input.nodes,
		options: {
			...(o.concurrency ? { concurrency: o.concurrency } : {}),
			maxFailures: o.max_failures,
			maxFailurePercent: o.max_failure_percent,
			stopOnFirstFailure: o.stop_on_first_failure
		}
	});
	return json({ run_id: run.id, number: run.number }, { status: 202 });
});
