import { isHttpError, isRedirect, json, type RequestEvent } from '@sveltejs/kit';
import { log, loggableError } from '$lib/server/log';
import type { z } from 'zod';
import { describeFieldErrors, fieldErrors } from '$lib/schemas/errors';
import { ServiceError, type ErrorCode } from '$lib/server/errors';
import { inputProblems } from './input';
import { bodyTooLarge, isBodyTooLarge } from './limits';
import type { Principal } from '$lib/server/auth/principal';

/** The API's error shape (docs/api.md, "Conventions"): `{"error": {code, message, fields}}`. */
export function errorResponse(
	status: number,
	code: ErrorCode,
	message: string,
	fields: Record<string, string> = {},
	headers: Record<string, string> = {}
): Response {
	return json({ error: { code, message, fields } }, { status, headers });
}

/**
 * Wraps a JSON endpoint so that every ServiceError (bad input, conflicts, missing rows) becomes a 4xx in
 * the documented shape. Anything else is a bug: it is logged and answered as a 500 in the same shape.
 */
export function apiHandler<E extends RequestEvent>(handler: (event: E) => Promise<Response>) {
	return async (event: E): Promise<Response> => {
		try {
			return await handler(event);
		} catch (err) {
			if (err instanceof ServiceError) return errorResponse(err.status, err.code, err.message, err.fields);
			if (isHttpError(err) || isRedirect(err)) throw err;
			log.error({ err: loggableError(err), path: event.url.pathname }, 'unhandled error in an API endpoint');
			return errorResponse(500, 'internal_error', 'Something went wrong on the console; the error is in its log.');
		}
	};
}

export function validate<S extends z.ZodType>(schema: S, input: unknown): z.infer<S> {
	const parsed = schema.safeParse(input);
	if (!parsed.success) {
		const fields = fieldErrors(parsed.error);
		throw new ServiceError('validation_failed', describeFieldErrors(fields), fields);
	}
	return parsed.data;
}

/**
 * The body as JSON, validated. With `maxBytes`, a body past it is refused (413) as soon as it grows past the
 * limit, whether or not a Content-Length announced it, before anything parses it.
 */
export async function readJson<S extends z.ZodType>(
	request: Request,
	schema: S,
	opts: { maxBytes?: number } = {}
): Promise<z.infer<S>> {
	return parseJsonText(await readJsonText(request, opts.maxBytes), schema);
}

/**
 * A JSON body's text, unparsed, for a caller that must see the exact bytes (a signed request), refused past
 * `maxBytes` (when given) like `readJson`'s; then `parseJsonText` reads it.
 */
export async function readJsonText(request: Request, maxBytes?: number): Promise<string> {
	const type = request.headers.get('content-type') ?? '';
	if (!/^application\/json\b/i.test(type)) {
		throw new ServiceError('unsupported_media_type', 'Send the body as JSON (Content-Type: application/json)');
	}
	try {
		return maxBytes === undefined ? await request.text() : await readLimited(request, maxBytes);
	} catch (err) {
		// Past the endpoint's own cap: its refusal; past the server's (adapter-node's BODY_SIZE_LIMIT): ours.
		if (!(err instanceof ServiceError) && isBodyTooLarge(err)) throw bodyTooLarge();
		throw err;
	}
}

/** JSON text read by `readJsonText`, checked as `readJson` checks a body. */
export function parseJsonText<S extends z.ZodType>(text: string, schema: S): z.infer<S> {
	let body: unknown;
	try {
		body = JSON.parse(text);
	} catch {
		throw new ServiceError('invalid_json', 'The body is not valid JSON');
	}
	refuseProblems(inputProblems(body));
	return validate(schema, body);
}

/** A 400 naming every field with a problem, when there is one. */
export function refuseProblems(fields: Record<string, string>): void {
	if (Object.keys(fields).length) throw new ServiceError('validation_failed', describeFieldErrors(fields), fields);
}

export function readQuery<S extends z.ZodType>(url: URL, schema: S): z.infer<S> {
	return validate(schema, Object.fromEntries(url.searchParams));
}

/** The principal of a request that `handle` already authorised. */
export function principalOf(event: Pick<RequestEvent, 'locals'>): Principal {
	const p = event.locals.principal;
	// handle() refuses unauthenticated requests to every non-public route before they get here.
	if (!p) throw new ServiceError('unauthenticated', 'Sign in or send an API token');
	return p;
}

function tooLarge(maxBytes: number): ServiceError {
	return new ServiceError('payload_too_large', `The body is larger than ${maxBytes} bytes`, {
		body: `must be at most ${maxBytes} bytes`
	});
}

async function readLimited(request: Request, maxBytes: number): Promise<string> {
	if (Number(request.headers.get('content-length') ?? 0) > maxBytes) throw tooLarge(maxBytes);
	if (!request.body) return '';
	const chunks: Uint8Array[] = [];
	let size = 0;
	const reader = request.body.getReader();
	for (;;) {
		const { done, value } = await reader.read();
		if (done) break;
		size += value.byteLength;
		if (size > maxBytes) {
			await reader.cancel();
			throw tooLarge(maxBytes);
		}
		chunks.push(value);
	}
	return Buffer.concat(chunks).toString('utf8');
}
