import { errorBodySchema } from '../../src/lib/schemas/responses';

/**
 * Calls a route's handler (a `+server.ts` export) as SvelteKit would for `POST <path>` with a JSON body: the
 * handler's own body reading, its error mapping and its answer, without the hooks (who may call it is the
 * authorisation matrix's to test).
 */
export async function callRoute(
	handler: (event: never) => Response | Promise<Response>,
	path: string,
	opts: { json?: unknown; params?: Record<string, string> } = {}
): Promise<Response> {
	const url = new URL(`http://console${path}`);
	const request = new Request(url, {
		method: 'POST',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify(opts.json ?? {})
	});
	const event = { request, url, params: opts.params ?? {}, locals: {}, getClientAddress: () => '127.0.0.1' };
	return handler(event as never);
}

/** A refusal's body, checked against the documented error shape (docs/api.md, "Conventions"). */
export async function errorOf(res: Response) {
	return errorBodySchema.parse(await res.json()).error;
}
