import { and, eq, lt, sql } from 'drizzle-orm';
import type { z } from 'zod';
import { enrolTokenPattern } from '$lib/schemas/agents';
import { db } from '$lib/server/db';
import { agentNonces } from '$lib/server/db/schema';
import { ServiceError } from '$lib/server/errors';
import { errorResponse, parseJsonText, readJsonText } from '$lib/server/http/api';
import { agentSecret } from './enrolment';
import { headers, hmacHex, replyText, requestText, sameSignature, TIMESTAMP_WINDOW_SECONDS } from './signing';

/**
 * Requests from pull agents (docs/pull-agent.md, "Signatures"). No session or token: a request is the node's
 * when it is signed with the node's secret, recent, and not seen before. Every answer to an authenticated
 * request, errors included, is signed back, so the agent acts only on what the console said.
 */

export interface AgentCaller {
	nodeId: string;
	secret: string;
	nonce: string;
}

const MAX_BODY_BYTES = 32_768;

const refused = (message: string, field: string, why: string) =>
	new ServiceError('unauthenticated', message, { [field]: why });

function header(h: Headers, name: string, pattern: RegExp, why: string): string {
	const v = h.get(name);
	if (v === null) throw refused(`Sign the request: the ${name} header is missing`, name, 'is required');
	if (!pattern.test(v)) throw refused(`The ${name} header is malformed`, name, why);
	return v;
}

interface SignedHeaders {
	nodeId: string;
	timestamp: string;
	nonce: string;
	signature: string;
}

const nodeIdPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The enrolment's headers (docs/pull-agent.md, "Enrolment"), present and well-formed, or a 401 naming one. */
export function enrolHeaders(h: Headers): { nodeId: string; token: string } {
	return {
		nodeId: header(h, headers.node, nodeIdPattern, 'must be the node id').toLowerCase(),
		token: header(h, headers.enrolToken, enrolTokenPattern, 'must be 64 hex digits')
	};
}

/** The signature's headers, all present and well-formed, read before the body so an unsigned call is a 401. */
export function signedHeaders(h: Headers): SignedHeaders {
	return {
		nodeId: header(h, headers.node, nodeIdPattern, 'must be the node id').toLowerCase(),
		timestamp: header(h, headers.timestamp, /^\d{1,12}$/, 'must be Unix seconds'),
		nonce: header(h, headers.nonce, /^[0-9a-f]{32,64}$/i, 'must be 32 to 64 hex digits').toLowerCase(),
		signature: header(h, headers.signature, /^[0-9a-f]{64}$/i, 'must be 64 hex digits')
	};
}

export async function authenticateAgent(
	{ nodeId, timestamp, nonce, signature }: SignedHeaders,
	r: { method: string; path: string; body: string }
): Promise<AgentCaller> {
	const secret = await agentSecret(nodeId);
	if (!secret) throw refused('This node has no enrolled agent', headers.node, 'is not an enrolled node');
	const skew = Math.abs(Date.now() / 1000 - Number(timestamp));
	if (skew > TIMESTAMP_WINDOW_SECONDS) {
		throw refused(
			`The request's timestamp is ${Math.round(skew)} s from the console's clock (${TIMESTAMP_WINDOW_SECONDS} s allowed)`,
			headers.timestamp,
			'is outside the window'
		);
	}
	const expected = hmacHex(secret, requestText({ method: r.method, path: r.path, timestamp, nonce, body: r.body }));
	if (!sameSignature(expected, signature)) {
		throw refused('The signature does not match this request', headers.signature, 'does not match');
	}
	// Checked last, so that only signed requests land in the table; the window bounds what it must remember.
	const fresh = await db()
		.insert(agentNonces)
		.values({ nodeId, nonce })
		.onConflictDoNothing()
		.returning({ nonce: agentNonces.nonce });
	if (!fresh.length) throw refused('This request was already received (a replay)', headers.nonce, 'was already used');
	await db()
		.delete(agentNonces)
		.where(
			and(
				eq(agentNonces.nodeId, nodeId),
				lt(agentNonces.seenAt, sql`now() - ${`${2 * TIMESTAMP_WINDOW_SECONDS} seconds`}::interval`)
			)
		);
	return { nodeId, secret, nonce };
}

function signed(caller: AgentCaller, status: number, body: string): Response {
	const timestamp = String(Math.floor(Date.now() / 1000));
	return new Response(body, {
		status,
		headers: {
			'content-type': 'application/json',
			[headers.timestamp]: timestamp,
			[headers.signature]: hmacHex(caller.secret, replyText({ status, nonce: caller.nonce, timestamp, body }))
		}
	});
}

/**
 * A JSON endpoint for agents: the request authenticated, then its body validated by `schema` (a 400 naming the
 * field), then `handler`'s answer, all signed. A request that is not the node's is refused with a 401, unsigned.
 */
export function agentEndpoint<S extends z.ZodType>(
	schema: S,
	handler: (caller: AgentCaller, input: z.infer<S>) => Promise<unknown>
) {
	return signedEndpoint(
		(request) => readJsonText(request, MAX_BODY_BYTES),
		(caller, text) => handler(caller, parseJsonText(text, schema))
	);
}

/** A GET for agents (no body: the signature covers an empty one), authenticated and answered as above. */
export function agentReadEndpoint(handler: (caller: AgentCaller) => Promise<unknown>) {
	return signedEndpoint(async () => '', handler);
}

function signedEndpoint(
	readText: (request: Request) => Promise<string>,
	handler: (caller: AgentCaller, text: string) => Promise<unknown>
) {
	return async (event: { request: Request; url: URL }): Promise<Response> => {
		let caller: AgentCaller;
		let text: string;
		try {
			const signedBy = signedHeaders(event.request.headers);
			text = await readText(event.request);
			caller = await authenticateAgent(signedBy, {
				method: event.request.method,
				path: event.url.pathname,
				body: text
			});
		} catch (err) {
			if (err instanceof ServiceError) return errorResponse(err.status, err.code, err.message, err.fields);
			throw err;
		}
		try {
			const answer = await handler(caller, text);
			return signed(caller, 200, JSON.stringify(answer));
		} catch (err) {
			if (!(err instanceof ServiceError)) throw err;
			// The API's one error shape, signed like any other answer.
			const refusal = errorResponse(err.status, err.code, err.message, err.fields);
			return signed(caller, refusal.status, await refusal.text());
		}
	};
}
